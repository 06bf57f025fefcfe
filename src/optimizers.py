"""The harness's optimizer factory: build the optimizer chosen by the ``optim`` config group (gRDA from the
``grda`` package, or a torch.optim baseline)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

from grda import GRDA
from src.errors import UserError

OPTIMIZERS = ("grda", "sgd", "sgd_momentum", "adagrad", "adam")


def effective_lr(cfg: Any, global_batch_size: int) -> Tuple[float, str]:
    """Learning rate after the linear scaling rule, and a note saying what was done."""
    ref = cfg.reference_batch_size
    if ref is None or ref == global_batch_size:
        return float(cfg.lr), ""
    lr = float(cfg.lr) * global_batch_size / ref
    note = f"lr scaled linearly from {cfg.lr} at batch {ref} to {lr:g} at global batch {global_batch_size}"
    return lr, note


def build_optimizer(model: nn.Module, cfg: Any, lr: float) -> torch.optim.Optimizer:
    """All parameters in one group, as the authors trained (BatchNorm and biases included)."""
    params = [p for p in model.parameters() if p.requires_grad]
    name = cfg.name
    try:
        if name == "grda":
            return GRDA(
                params,
                lr=lr,
                c=cfg.c,
                mu=cfg.mu,
                impl=cfg.impl,
                accumulator_init=cfg.accumulator_init,
                accumulator_range=cfg.accumulator_range,
                accumulator_seed=cfg.accumulator_seed,
                accumulator_dtype=cfg.accumulator_dtype,
            )
        if name in ("sgd", "sgd_momentum"):
            # Keras' SGD(nesterov=True) with its default momentum 0 is plain SGD; torch refuses that combination.
            nesterov = cfg.nesterov and cfg.momentum > 0
            return torch.optim.SGD(
                params, lr=lr, momentum=cfg.momentum, nesterov=nesterov, weight_decay=cfg.weight_decay, foreach=True
            )
        if name == "adagrad":
            return torch.optim.Adagrad(params, lr=lr, eps=cfg.eps, weight_decay=cfg.weight_decay, foreach=True)
        if name == "adam":
            return torch.optim.Adam(
                params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, foreach=True
            )
    except ValueError as e:
        raise UserError(f"optim={name}: {e} (fix the optim.* override)") from None
    raise UserError(f"unknown optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")


def describe(cfg: Any, lr: float, note: str) -> Dict[str, Any]:
    """The ``optimizer`` entry of summary.json."""
    out: Dict[str, Any] = {"name": cfg.name, "lr": lr, "base_lr": float(cfg.lr)}
    if cfg.name == "grda":
        out.update(c=float(cfg.c), mu=float(cfg.mu), accumulator_init=cfg.accumulator_init)
        if cfg.accumulator_init == "uniform":
            out.update(accumulator_range=float(cfg.accumulator_range), accumulator_seed=int(cfg.accumulator_seed))
    if cfg.name.startswith("sgd"):
        # what was built: Nesterov without momentum is plain SGD (as in Keras)
        out.update(momentum=float(cfg.momentum), nesterov=bool(cfg.nesterov) and float(cfg.momentum) > 0)
    if note:
        out["lr_note"] = note
    return out
