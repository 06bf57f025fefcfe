"""gRDA in timm's optimizer factory (timm >= 1.0.12, whose optimizers live in a registry of ``OptimInfo``).

    import grda.timm, timm
    grda.timm.register()                                   # once per process
    opt = timm.optim.create_optimizer_v2(model, opt="grda", lr=0.01, c=0.005, mu=0.51)

timm passes ``weight_decay`` (default 0) and, when it is > 0, splits the parameters into a decayed group and one
without decay for biases and normalisation layers. GRDA has no weight decay (the soft threshold is its
regularizer), so it takes ``weight_decay=0`` and refuses anything else with a ``ValueError``; with the default 0
timm puts every parameter into one group, so **BatchNorm/LayerNorm parameters and biases get the same threshold as
the weights and are pruned alike**, as in the paper's runs (the authors pruned all parameters). To keep 1-d
parameters dense, pass ``param_group_fn=grda.timm.dense_1d_groups``: they then train as plain SGD (``c = 0``).
"""

from __future__ import annotations

from typing import Dict, List

from torch import nn

from grda.optimizer import GRDA

__all__ = ["register", "dense_1d_groups", "NAME"]

NAME = "grda"


def register(name: str = NAME) -> None:
    """Make ``timm.optim.create_optimizer_v2(..., opt=name)`` build :class:`grda.GRDA`. Idempotent."""
    from timm.optim import OptimInfo
    from timm.optim._optim_factory import default_registry  # the registry create_optimizer_v2 reads

    try:
        current = default_registry.get_optimizer_info(name)
    except ValueError:
        current = None
    if current is not None and current.opt_class is GRDA:
        return
    default_registry.register(
        OptimInfo(
            name=name,
            opt_class=GRDA,
            description="gRDA: generalized regularized dual averaging, directional pruning (Chao et al., NeurIPS 2020)",
            has_eps=False,
            has_momentum=False,
            has_betas=False,
        )
    )


def dense_1d_groups(model: nn.Module) -> List[Dict]:
    """Parameter groups for ``create_optimizer_v2(..., param_group_fn=...)``: weights (2-d and up) pruned by gRDA,
    1-d parameters (biases, normalisation scales and shifts) in a group with ``c = 0`` (plain SGD, never pruned)."""
    pruned, dense = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (dense if p.ndim <= 1 or name.endswith(".bias") else pruned).append(p)
    return [group for group in ({"params": pruned}, {"params": dense, "c": 0.0}) if group["params"]]
