"""Gradual magnitude pruning (Zhu & Gupta 2017), the baseline the paper compares gRDA with.

Every conv and linear weight is pruned to the same sparsity s_t, which follows the cubic schedule

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0))^3   for t_0 <= t <= t_1,

updated every ``frequency`` optimizer steps (t counts steps; t_0, t_1 are fractions of the run). Masks
come from ``torch.nn.utils.prune.L1Unstructured`` (smallest magnitudes first, nested in the previous
mask), and pruned weights are held at exactly zero after every optimizer step. Masks are part of the
checkpoint, so a resumed run prunes exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any, Dict

import torch
from torch import nn
from torch.nn.utils import prune

from src.errors import UserError
from src.sparsity import clean_name

PRUNERS = ("none", "gmp")


def cubic_sparsity(step: int, total_steps: int, cfg: Any) -> float:
    start = int(cfg.start_fraction * total_steps)
    end = max(start + 1, int(cfg.end_fraction * total_steps))
    if step < start:
        return 0.0
    progress = min(1.0, (step - start) / (end - start))
    return cfg.final_sparsity + (cfg.initial_sparsity - cfg.final_sparsity) * (1.0 - progress) ** 3


class GradualMagnitudePruner:
    def __init__(self, model: nn.Module, cfg: Any, total_steps: int) -> None:
        if not 0.0 <= cfg.initial_sparsity <= cfg.final_sparsity < 1.0:
            raise UserError(
                f"prune=gmp needs 0 <= prune.initial_sparsity <= prune.final_sparsity < 1, "
                f"got {cfg.initial_sparsity} and {cfg.final_sparsity}"
            )
        if not 0.0 <= cfg.start_fraction < cfg.end_fraction <= 1.0:
            raise UserError("prune=gmp needs 0 <= prune.start_fraction < prune.end_fraction <= 1")
        if cfg.frequency <= 0:
            raise UserError(f"prune.frequency must be > 0 steps, got {cfg.frequency}")
        self.cfg = cfg
        self.total_steps = total_steps
        kinds = (nn.Linear, nn.modules.conv._ConvNd)
        self.weights: Dict[str, nn.Parameter] = {
            clean_name(f"{name}.weight"): module.weight
            for name, module in model.named_modules()
            if isinstance(module, kinds)
        }
        self.masks: Dict[str, torch.Tensor] = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.weights.items()}
        self.sparsity = 0.0

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Call after every optimizer step (``step`` counts from 1)."""
        if step % self.cfg.frequency == 0 or step == 1:
            target = cubic_sparsity(step, self.total_steps, self.cfg)
            if target > self.sparsity:
                self._prune_to(target)
        for name, weight in self.weights.items():
            weight.mul_(self.masks[name])

    def _prune_to(self, sparsity: float) -> None:
        for name, weight in self.weights.items():
            amount = int(round(sparsity * weight.numel()))
            method = prune.L1Unstructured(amount=amount)
            self.masks[name] = method.compute_mask(
                weight.detach(), default_mask=self.masks[name].to(weight.dtype)
            ).bool()
        self.sparsity = sparsity

    def state_dict(self) -> Dict[str, Any]:
        return {"sparsity": self.sparsity, "masks": {n: m.cpu() for n, m in self.masks.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.sparsity = float(state["sparsity"])
        for name, mask in state["masks"].items():
            self.masks[name] = mask.to(self.weights[name].device)


def build_pruner(model: nn.Module, cfg: Any, total_steps: int):
    if cfg.name == "none":
        return None
    if cfg.name == "gmp":
        return GradualMagnitudePruner(model, cfg, total_steps)
    raise UserError(f"unknown pruner '{cfg.name}'; choose one of: {', '.join(PRUNERS)}")


def log_l2_over_l1(model: nn.Module) -> float:
    """log(||w||_2 / ||w||_1) over all trainable parameters (the paper's Figure 2): larger = sparser."""
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    sq = torch.stack([p.double().pow(2).sum() for p in params]).sum()
    l1 = torch.stack([p.double().abs().sum() for p in params]).sum()
    l2, l1 = float(sq.sqrt()), float(l1)
    return math.log(l2 / l1) if l1 > 0 else float("nan")
