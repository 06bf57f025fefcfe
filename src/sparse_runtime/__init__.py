"""Sparse inference on the CPU: run a gRDA model's Linear and Conv2d layers dense or sparse, whichever is faster.

    from src.sparse_runtime import load_runtime, convert
    rt = load_runtime("runs/.../checkpoint.pth")          # or a sparse export (src.sparse_export), see load_runtime
    y = rt(x)                                             # first call with a new input shape plans it (timings)

    rt = convert(model)                                   # any nn.Module holding Conv2d / Linear layers
    rt.plan(example_input)                                # optional: plan now instead of at the first call

What :func:`convert` does to (a copy of) the model, in eval mode:

1. traces it with ``torch.fx``; drops Identity/Dropout; folds every BatchNorm2d into the convolution before it
   (when that convolution feeds only it); fuses a ReLU into the Conv2d/Linear before it;
2. replaces each Conv2d and Linear with a :class:`~src.sparse_runtime.layers.SparseConv2d` /
   :class:`~src.sparse_runtime.layers.SparseLinear` that can run dense (PyTorch), with the direct sparse kernel
   (``spconv_cpu.c``: no im2col, the padded input read in place), or with torch's CSR/BSR tensors (MKL) in both
   orientations.

:meth:`SparseModel.plan` times every candidate of every layer on the layer's real input (interleaved; the fastest
of several runs, since interference from other processes only adds time),
keeps the fastest (dense unless a sparse one is 3 % faster), then times the whole model planned against the
original model (an untouched eval-mode copy, plain PyTorch) and keeps the plan only if it is faster end to end
(folded BatchNorms and the C pooling can win with no zeros at all); an input shape whose plan is slower runs the
original model, so the runtime is never slower than PyTorch by more than the timing noise (the copy costs the memory
of the weights once more; ``convert(keep_original=False)`` saves it, runs such shapes through the converted layers,
dense, and times the plan against those only when some operation went sparse). Choices are cached per machine,
thread count,
layer, sparsity pattern and input shape (:mod:`src.sparse_runtime.plan`, ``$GRDA_SPARSE_PLAN``); a layer without
zeros is dense without timing. A model that fx cannot trace is converted module by module, without folding.

Threads: planned shapes may run from several Python threads at once (the layers keep one work buffer per calling
thread); planning (a new shape's first call, :meth:`SparseModel.plan`) must not overlap other calls.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.errors import UserError
from src.sparse_runtime import kernel  # noqa: F401  (src.sparse_runtime.kernel)
from src.sparse_runtime.layers import (
    CANDIDATES,
    MaxPool2d,
    PlannedOp,
    SparseConv2d,
    SparseLayer,
    SparseLinear,
    total_macs,
)
from src.sparse_runtime.plan import (
    MARGIN,
    PlanCache,
    cache_path,
    choose,
    layer_key,
    machine_key,
    measure,
    model_key,
)

__all__ = [
    "CANDIDATES",
    "PlanCache",
    "SparseConv2d",
    "SparseLinear",
    "SparseModel",
    "cache_path",
    "convert",
    "load_runtime",
    "load_weights",
    "build_dense_model",
    "machine_key",
]

_IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_RELU_FUNCTIONS = (torch.relu, torch.relu_, F.relu)


class SparseModel(nn.Module):
    """A converted model; see the module docstring. ``forward`` plans a new input shape first (``autoplan``)."""

    def __init__(
        self, module: nn.Module, info: Dict[str, Any], autoplan: bool = True, original: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.module = module
        self.original = original  # the model before conversion: what an input shape planned "dense" runs
        self.info = info  # what convert did: traced, folded, fused
        self.autoplan = autoplan
        self.cache_enabled = True
        self.cache_file: Optional[Path] = None
        self.planned: Dict[Tuple, Dict[str, Any]] = {}  # (input shape, threads) -> the plan's summary
        self._routes: Dict[Tuple, nn.Module] = {}  # (input shape, threads) -> the model that runs it

    def sparse_layers(self) -> List[Tuple[str, SparseLayer]]:
        return [(name, m) for name, m in self.module.named_modules() if isinstance(m, SparseLayer)]

    def planned_ops(self) -> List[Tuple[str, PlannedOp]]:
        """The sparse layers and the other operations with a choice of implementation (max pooling)."""
        return [(name, m) for name, m in self.module.named_modules() if isinstance(m, PlannedOp)]

    def forward(self, x: Tensor) -> Tensor:
        # The per-call cost matters for models that take ~0.05 ms: one dict lookup (torch.Size hashes as a tuple).
        route = self._routes.get((x.shape, torch.get_num_threads()))
        if route is None:
            if self.autoplan:
                self.plan(x)
                return self._routes[(x.shape, torch.get_num_threads())](x)
            return self.module(x)
        return route(x)

    def run_dense(self, x: Tensor) -> Tensor:
        """The model all dense: the original when kept, else the converted layers forced dense."""
        return self.original(x) if self.original is not None else self.run_all(x, "dense")

    def run_all(self, x: Tensor, candidate: Optional[str]) -> Tensor:
        """One forward with every sparse layer forced to ``candidate`` (where it can run it; None: the plan)."""
        layers = [m for _, m in self.sparse_layers()]
        saved = [m.force for m in layers]
        try:
            for m in layers:
                m.force = candidate if candidate is None or m.supports(candidate) else "dense"
            return self.module(x)
        finally:
            for m, f in zip(layers, saved):
                m.force = f

    @torch.no_grad()
    def capture_inputs(self, x: Tensor) -> List[Tuple[str, PlannedOp, Tensor]]:
        """Every planned operation's input in one forward of ``x`` with dense layers (a copy of each)."""
        seen: List[Tuple[str, PlannedOp, Tensor]] = []
        hooks = []
        for name, m in self.planned_ops():

            def hook(mod, args, name=name):
                seen.append((name, mod, args[0].detach().clone()))

            hooks.append(m.register_forward_pre_hook(hook))
        try:
            self.run_all(x, "dense")
        finally:
            for h in hooks:
                h.remove()
        return seen

    @torch.no_grad()
    def plan(
        self,
        x: Tensor,
        rounds: int = 7,
        budget_s: float = 0.2,
        e2e_rounds: int = 7,
        e2e_budget_s: float = 3.0,
        cache: Optional[PlanCache] = None,
    ) -> Dict[str, Any]:
        """Choose each operation's implementation for inputs shaped like ``x`` (see the module docstring).

        Returns ``{"choice": "sparse"|"dense", "sparse_ms", "dense_ms", "layers": [...]}``: the end-to-end
        times of the planned model and of the model all dense (:meth:`run_dense`; None when not timed), and a row
        per call of a planned operation. "dense": inputs of this shape run :meth:`run_dense`.
        """
        threads = torch.get_num_threads()
        cache = cache if cache is not None else PlanCache(self.cache_file, enabled=self.cache_enabled)
        machine = machine_key(threads)
        shape_key = (tuple(x.shape), threads)
        rows, keys = [], []
        for name, op, inp in self.capture_inputs(x):
            key = layer_key(machine, op.signature(), op.relu, op.pattern, inp.shape)
            keys.append(key)
            entry = cache.get(key)
            cands = op.candidates(inp)
            if entry is None or entry.get("choice") not in cands:
                if isinstance(op, SparseLayer) and op.nnz == op.weight.numel():
                    entry = {"choice": "dense", "ms": {}, "why": "no zeros"}
                elif len(cands) == 1:
                    entry = {"choice": "dense", "ms": {}, "why": "no other implementation for this input"}
                else:
                    if inp.dim() > 1 and inp.shape[0] > 1 and len(cands) > 2:
                        # Screen on one sample first: a candidate 3x slower there is not worth a full-batch run.
                        one = inp[:1]
                        probe = measure(
                            {c: (lambda c=c, op=op, one=one: op.run(one, c)) for c in cands},
                            3,
                            budget_s / 4,
                            drop_factor=None,
                            stat="min",
                        )
                        cands = [c for c in cands if c == "dense" or probe[c] <= 3 * min(probe.values())]
                    # Timed as they will run: through the runners that set_choice binds.
                    fns = {c: functools.partial(op.runner(tuple(inp.shape), threads, c), inp) for c in cands}
                    ms = {c: 1e3 * t for c, t in measure(fns, rounds, budget_s, stat="min").items()}
                    entry = {"choice": choose(ms), "ms": {c: round(t, 4) for c, t in ms.items()}}
                cache.put(key, entry)
            op.set_choice(inp.shape, threads, entry["choice"])
            row = {
                "name": name,
                "kind": op.kind,
                "layer": op.signature(),
                "relu": op.relu,
                "input": list(inp.shape),
                "density": None,
                "macs": 0,
                "nonzero_macs": 0,
            }
            if isinstance(op, SparseLayer):
                dense_macs, sparse_macs = total_macs(op, tuple(inp.shape))
                row.update(density=op.density, macs=dense_macs, nonzero_macs=sparse_macs)
            rows.append({**row, **entry})
        summary: Dict[str, Any] = {"choice": "dense", "sparse_ms": None, "dense_ms": None, "layers": rows}
        # Against the original model even the all-dense plan can win (folded BatchNorms, fused ReLUs, pooling):
        # timed whenever the two differ; against the converted layers forced dense, only when some op changed.
        if self.original is not None or any(r["choice"] != "dense" for r in rows):
            reference = "original" if self.original is not None else "converted"  # what "dense" runs
            mkey = (
                model_key(keys, x.shape) + f" | {machine} | dense = {reference} | folded "
                f"{self.info.get('folded_bn', 0)} fused {self.info.get('fused_relu', 0)}"
            )
            entry = cache.get(mkey)
            if entry is None:
                fns = {"sparse": lambda: self.run_all(x, None), "dense": lambda: self.run_dense(x)}
                ms = {
                    c: 1e3 * t
                    for c, t in measure(
                        fns, e2e_rounds, e2e_budget_s, drop_factor=None, warmup=False, stat="min", min_sample_s=0.01
                    ).items()
                }
                choice = "sparse" if ms["sparse"] < ms["dense"] * MARGIN else "dense"
                entry = {"choice": choice, "sparse_ms": round(ms["sparse"], 4), "dense_ms": round(ms["dense"], 4)}
                cache.put(mkey, entry)
            summary.update(entry)
            if entry["choice"] == "dense":  # the plan is slower end to end: every op dense for this shape
                modules = dict(self.module.named_modules())
                for r in rows:
                    modules[r["name"]].set_choice(r["input"], threads, "dense")
        cache.save()
        for _, m in self.planned_ops():
            m.drop_unused()
        self.planned[shape_key] = summary
        dense = summary["choice"] == "dense" and self.original is not None
        self._routes[shape_key] = self.original if dense else self.module
        return summary


# ------------------------------------------------------------------------------ conversion


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv <- bn(conv(.)) in eval mode: scale the weights per output channel, shift the bias."""
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.detach().clone())


def _is_relu(node: torch.fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS and len(node.args) == 1
    if node.op == "call_method":
        return node.target in ("relu", "relu_") and len(node.args) == 1
    return False


def _rewrite_graph(gm: torch.fx.GraphModule, fold_bn: bool, fuse_relu: bool) -> Tuple[int, Dict[str, bool]]:
    graph = gm.graph
    modules = dict(gm.named_modules())
    for node in list(graph.nodes):  # eval mode: identities and dropouts do nothing
        if node.op == "call_module" and isinstance(modules.get(node.target), _IDENTITIES) and len(node.args) == 1:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    uses = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def sole_layer(node: Any, kinds) -> bool:
        return (
            isinstance(node, torch.fx.Node)
            and node.op == "call_module"
            and isinstance(modules.get(node.target), kinds)
            and len(node.users) == 1
            and uses[node.target] == 1
        )

    folded = 0
    if fold_bn:
        for node in list(graph.nodes):
            bn = modules.get(node.target) if node.op == "call_module" else None
            if (
                isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
                and len(node.args) == 1
                and not node.kwargs
                and sole_layer(node.args[0], nn.Conv2d)
            ):
                _fold_bn(modules[node.args[0].target], bn)
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                folded += 1
    relu: Dict[str, bool] = {}
    if fuse_relu:
        for node in list(graph.nodes):
            if _is_relu(node, modules) and sole_layer(node.args[0], (nn.Conv2d, nn.Linear)):
                relu[node.args[0].target] = True
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return folded, relu


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def convert(
    model: nn.Module, fold_bn: bool = True, fuse_relu: bool = True, autoplan: bool = True, keep_original: bool = True
) -> SparseModel:
    """A :class:`SparseModel` running a float32, eval-mode copy of ``model`` (``model`` itself is untouched).

    ``keep_original``: keep a second, unconverted copy for the input shapes whose plan is not faster (see the module
    docstring).
    """
    model = copy.deepcopy(model).float().eval()
    original = copy.deepcopy(model) if keep_original else None
    info: Dict[str, Any] = {"traced": False, "folded_bn": 0, "fused_relu": 0}
    relu: Dict[str, bool] = {}
    module: nn.Module = model
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # data-dependent control flow and the like: convert module by module
        info["trace_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        module = gm
        info["traced"] = True
        info["folded_bn"], relu = _rewrite_graph(gm, fold_bn, fuse_relu)
        info["fused_relu"] = len(relu)
    for name, m in list(module.named_modules()):
        if isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d:
            _set_module(module, name, SparseConv2d.from_module(m, relu=relu.get(name, False), name=name))
        elif isinstance(m, nn.Linear) and type(m) is nn.Linear:
            _set_module(module, name, SparseLinear.from_module(m, relu=relu.get(name, False), name=name))
        elif type(m) is nn.MaxPool2d and not m.return_indices:
            _set_module(module, name, MaxPool2d.from_module(m, name=name))
    return SparseModel(module, info, autoplan=autoplan, original=original).eval()


# ------------------------------------------------------------------------------ loading files

# Input shape per dataset of the harness (src/data): used when a file's config names the dataset.
DATA_INPUT_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "imagenet": (3, 224, 224),
}
# The dataset each built-in model is trained on in the presets (configs/experiment): the input shape of a file
# without a training config, or of --model naming another model than the file's.
MODEL_DATA = {
    "mlp": "digits",
    "lenet5": "mnist",
    "keras_cnn": "cifar10",
    "wrn": "cifar10",
    "vgg16": "cifar10",
    "resnet50": "imagenet",
}


def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**30


def load_weights(path: str | Path) -> Tuple[Dict[str, Tensor], Optional[Dict[str, Any]]]:
    """(state_dict, training config or None) of a harness checkpoint, a bare state_dict or a sparse export."""
    from src.checkpoint import extract_state_dict, load_checkpoint
    from src.sparse_export import load_sparse, read_metadata

    path = Path(path)
    if path.is_file() and (path.suffix == ".safetensors" or _is_safetensors(path)):
        config = None
        raw = read_metadata(path).get("config")
        if raw:
            try:
                config = json.loads(raw)
            except ValueError:
                config = None
        return load_sparse(path), config
    obj = load_checkpoint(path)
    config = obj.get("config") if isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) else None
    return extract_state_dict(obj, path), (dict(config) if config is not None else None)


def _num_classes(state_dict: Mapping[str, Tensor]) -> Optional[int]:
    """Outputs of the last 2-D weight (the classifier in every model of src/models)."""
    last = None
    for name, t in state_dict.items():
        if name.endswith("weight") and t.dim() == 2 and t.is_floating_point():
            last = int(t.shape[0])
    return last


def build_dense_model(
    path: str | Path,
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> Tuple[nn.Module, Tuple[int, ...], Dict[str, Any]]:
    """The model a file's weights belong to, built from its saved config (or the arguments), weights loaded.

    Returns (model in eval mode, input shape (C, H, W), {"model": name, "num_classes": k, "config": bool}).
    UserError when the file cannot be read, names no model and none is given, or the weights do not fit.
    """
    from src.checkpoint import load_model_weights
    from src.config import ModelConfig
    from src.models import MODELS, build_model

    if model is not None and model not in MODELS:
        raise UserError(f"unknown model '{model}' (--model); choose one of: {', '.join(sorted(MODELS))}")
    state_dict, config = load_weights(path)
    model_cfg = dict((config or {}).get("model") or {})
    data_name = str(((config or {}).get("data") or {}).get("name", "")).lower()
    if model is not None and model != model_cfg.get("name"):
        model_cfg = {"name": model}  # another model than the file's config: its defaults, its own dataset's input
        data_name = MODEL_DATA.get(model, "")
    if "name" not in model_cfg:
        raise UserError(
            f"'{path}' holds no training config naming its model: pass --model NAME "
            f"(one of: {', '.join(sorted(MODELS))})"
        )
    fields = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(ModelConfig)
    }
    fields.update({k: v for k, v in model_cfg.items()})
    fields["init_from"] = None
    cfg = SimpleNamespace(**fields)
    if input_shape is None:
        if data_name not in DATA_INPUT_SHAPES:
            data_name = MODEL_DATA.get(str(cfg.name), data_name)
        if data_name not in DATA_INPUT_SHAPES:
            raise UserError(
                f"cannot tell the input shape of '{path}' (dataset {data_name or 'unknown'}): pass --input-shape C,H,W"
            )
        input_shape = DATA_INPUT_SHAPES[data_name]
    classes = num_classes or _num_classes(state_dict)
    if classes is None:
        raise UserError(f"cannot tell the number of classes of '{path}': pass --num-classes K")
    net = build_model(cfg, num_classes=classes, input_shape=tuple(int(s) for s in input_shape))
    load_model_weights(net, state_dict, path)
    return (
        net.float().eval(),
        tuple(int(s) for s in input_shape),
        {"model": cfg.name, "num_classes": classes, "config": config is not None},
    )


def load_runtime(
    path: str | Path,
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> SparseModel:
    """:func:`convert` of the model in ``path`` (see :func:`build_dense_model`)."""
    net, shape, meta = build_dense_model(path, model, num_classes, input_shape)
    rt = convert(net)
    rt.info.update(meta, input_shape=list(shape))
    return rt
