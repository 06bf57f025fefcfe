"""Per-layer sparsity reports: exact zeros (counted by ``grda.zero_counts``, on the parameters' device with one host
sync), split into conv/linear weights and the rest, as the authors count them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Tuple

from torch import Tensor, nn

from grda import zero_counts

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """Drop the prefixes that DDP (``module.``) and torch.compile (``_orig_mod.``) add."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name.replace("._orig_mod.", ".").replace(".module.", ".")


@dataclass
class LayerSparsity:
    name: str
    shape: Tuple[int, ...]
    numel: int
    zeros: int
    is_weight: bool  # a conv or linear weight

    @property
    def sparsity(self) -> float:
        return 100.0 * self.zeros / self.numel if self.numel else 0.0


def conv_linear_weight_names(model: nn.Module) -> set:
    """Names of the weights of conv and linear layers (what 'weights only' sparsity counts)."""
    kinds = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)
    return {
        clean_name(f"{module_name}.weight" if module_name else "weight")
        for module_name, module in model.named_modules()
        if isinstance(module, kinds) and getattr(module, "weight", None) is not None
    }


def layer_sparsity(model: nn.Module) -> List[LayerSparsity]:
    """Sparsity of every trainable parameter of ``model``."""
    named = [(clean_name(n), p) for n, p in model.named_parameters() if p.requires_grad]
    weights = conv_linear_weight_names(model)
    return _layers(named, weights)


def _layers(named: List[Tuple[str, Tensor]], weights) -> List[LayerSparsity]:
    """Counted by grda's counter (one device-to-host copy; DTensors counted over all shards)."""
    counts = zero_counts(named)
    return [LayerSparsity(n, tuple(t.shape), t.numel(), counts[n][0], n in weights) for n, t in named]


def state_dict_sparsity(
    state_dict: Mapping[str, Tensor], weight_names: Iterable[str] | None = None
) -> List[LayerSparsity]:
    """Sparsity of the floating-point tensors of a bare state_dict (buffers like BN running stats excluded).

    Without a model at hand, 'weights' means tensors named ``*.weight`` with 2 or more dimensions
    (conv and linear kernels; BatchNorm/LayerNorm weights are 1-D).
    """
    named = [
        (clean_name(k), v)
        for k, v in state_dict.items()
        if isinstance(v, Tensor) and v.is_floating_point() and not _is_buffer_name(k)
    ]
    weights = (
        set(weight_names)
        if weight_names is not None
        else {n for n, v in named if n.endswith("weight") and v.dim() >= 2}
    )
    return _layers(named, weights)


def _is_buffer_name(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in {"running_mean", "running_var", "num_batches_tracked"}


def summarize(layers: List[LayerSparsity]) -> Dict[str, object]:
    """Totals the way the authors count them: all trainable parameters, and conv/linear weights only."""
    num_params = sum(l.numel for l in layers)
    num_zeros = sum(l.zeros for l in layers)
    w_numel = sum(l.numel for l in layers if l.is_weight)
    w_zeros = sum(l.zeros for l in layers if l.is_weight)
    return {
        "sparsity": 100.0 * num_zeros / num_params if num_params else 0.0,
        "sparsity_weights": 100.0 * w_zeros / w_numel if w_numel else 0.0,
        "num_params": num_params,
        "num_zeros": num_zeros,
        "num_weights": w_numel,
        "num_weight_zeros": w_zeros,
        "per_layer": {
            l.name: {
                "shape": list(l.shape),
                "numel": l.numel,
                "zeros": l.zeros,
                "sparsity": l.sparsity,
                "is_weight": l.is_weight,
            }
            for l in layers
        },
    }


def format_table(layers: List[LayerSparsity]) -> str:
    """A fixed-width per-layer table with the two totals."""
    totals = summarize(layers)
    width = max([len("layer")] + [len(l.name) for l in layers])
    header = f"{'layer':<{width}}  {'shape':<20} {'numel':>12} {'zeros':>12} {'sparsity %':>10}"
    lines = [header, "-" * len(header)]
    for l in layers:
        shape = "x".join(map(str, l.shape)) or "scalar"
        lines.append(f"{l.name:<{width}}  {shape:<20} {l.numel:>12,} {l.zeros:>12,} {l.sparsity:>10.2f}")
    lines.append("-" * len(header))
    lines.append(
        f"{'all parameters':<{width}}  {'':<20} {totals['num_params']:>12,} "
        f"{totals['num_zeros']:>12,} {totals['sparsity']:>10.2f}"
    )
    lines.append(
        f"{'conv/linear weights':<{width}}  {'':<20} {totals['num_weights']:>12,} {totals['num_weight_zeros']:>12,} "
        f"{totals['sparsity_weights']:>10.2f}"
    )
    return "\n".join(lines)
