"""Learning-rate schedules, as per-epoch multipliers of the base lr (set at the start of each epoch)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from src.errors import UserError

SCHEDULES = ("constant", "step", "wrn")
EPOCH_BASES = (0, 1)


def _epoch_base(cfg: Any) -> int:
    base = getattr(cfg, "epoch_base", 0)
    if isinstance(base, bool) or base not in EPOCH_BASES:
        raise UserError(f"schedule.epoch_base must be 0 or 1 (how the schedule numbers the first epoch), got {base}")
    return int(base)


def lr_factor(cfg: Any, epochs: int) -> Callable[[int], float]:
    """factor(epoch) for epoch counted from 0 (the trainer's count).

    The schedule itself sees ``epoch + cfg.epoch_base``: with ``epoch_base=1`` milestones and the wrn
    fractions number the first epoch 1, as the authors' CIFAR ``train.py`` (``learning_rate_schedule(lr,
    epoch, epochs)`` for ``epoch`` in 1..epochs) and MNIST example (``lr * 0.1 ** (epoch // 3)``) do.
    """
    base = _epoch_base(cfg)
    if cfg.name == "constant":
        return lambda epoch: 1.0
    if cfg.name == "step":
        milestones = sorted(int(m) for m in cfg.milestones)
        gamma = float(cfg.gamma)
        return lambda epoch: gamma ** sum(epoch + base >= m for m in milestones)
    if cfg.name == "wrn":
        flat, end, final = float(cfg.flat_fraction), float(cfg.decay_end_fraction), float(cfg.final_fraction)
        if not 0 <= flat < end <= 1:
            raise UserError(f"schedule=wrn needs 0 <= flat_fraction < decay_end_fraction <= 1, got {flat} and {end}")

        def wrn(epoch: int) -> float:
            t = (epoch + base) / epochs
            if t <= flat:
                return 1.0
            if t <= end:
                return 1.0 - (t - flat) / (end - flat) * (1.0 - final)
            return final

        return wrn
    raise UserError(f"unknown schedule '{cfg.name}'; choose one of: {', '.join(SCHEDULES)}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, epochs))
