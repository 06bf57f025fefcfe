r"""gRDA: generalized regularized dual averaging (Chao, Wang, Xing & Cheng, NeurIPS 2020).

Trains a dense network and ends with a sparse one ("directional pruning").
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["GRDA", "threshold_increment", "closed_form_threshold", "soft_threshold"]

IMPLEMENTATIONS = ("auto", "blocked", "foreach", "reference")
# Elements per block of the blocked path: the block's accumulator stays in cache between its update and
# its soft threshold (tuned with scripts/bench_optimizer.py).
BLOCK = 1 << 18


def threshold_increment(step: int, lr: float, c: float, mu: float) -> float:
    r"""Growth of the soft threshold at the ``step``-th update (``step`` counts from 1).

    :math:`\Delta\tau_n = c\,\gamma^{\mu+1/2}\,(n^\mu - (n-1)^\mu)`, written as the authors wrote it.
    """
    scale = c * lr ** (mu + 0.5)
    return scale * step**mu - scale * (step - 1) ** mu


def closed_form_threshold(step: int, lr: float, c: float, mu: float) -> float:
    r""":math:`\tau_n = c\sqrt{\gamma}\,(n\gamma)^\mu`: the threshold after ``step`` updates at constant lr."""
    return c * math.sqrt(lr) * (step * lr) ** mu


def soft_threshold(x: Tensor, tau: float) -> Tensor:
    r""":math:`S_\tau(x) = \mathrm{sign}(x)\max(|x| - \tau, 0)`, literally (the reference formula)."""
    return torch.sign(x) * torch.clamp(x.abs() - tau, min=0)


class GRDA(Optimizer):
    r"""Generalized regularized dual averaging, the optimizer behind directional pruning.

    For every parameter :math:`w` it keeps an accumulator :math:`a` that starts as a copy of
    the parameter's value at its first step, :math:`a_0 = w_0`. At the parameter's :math:`n`-th
    step, with learning rate :math:`\gamma` and gradient :math:`g_n`:

    .. math::
        a_n    &= a_{n-1} - \gamma\, g_n \\
        \tau_n &= \tau_{n-1} + c\,\gamma^{\mu + 1/2}\,\bigl(n^\mu - (n-1)^\mu\bigr), \qquad \tau_0 = 0 \\
        w_n    &= S_{\tau_n}(a_n) = \mathrm{sign}(a_n)\,\max(|a_n| - \tau_n,\ 0)

    With a constant learning rate the threshold is the paper's closed form
    :math:`\tau_n = c\sqrt{\gamma}\,(n\gamma)^\mu`, so :math:`w_n = S_{\tau_n}(w_0 - \gamma\sum_k g_k)`.
    When a scheduler changes ``param_group['lr']``, :math:`\tau` keeps what it has accumulated
    and grows at the new rate from then on; it is never recomputed. Entries whose accumulator
    lies within :math:`[-\tau, \tau]` are exactly zero. With ``c = 0`` the update is plain SGD
    (no momentum, no weight decay). The rule is the authors' PyTorch implementation.

    Args:
        params: iterable of parameters or dicts defining parameter groups; each group may set
            its own ``lr``, ``c`` and ``mu``.
        lr: learning rate :math:`\gamma` (> 0). Use what works for SGD *without* momentum on
            the same model, scaled linearly with the batch size.
        c: threshold scale (>= 0). Small: :math:`0 < c \le 0.005` in the paper's experiments.
            Larger ``c`` gives a sparser network, with most of its effect early in training.
        mu: threshold growth exponent (> 0). The theory covers :math:`0.5 < \mu < 1`; the
            authors recommend :math:`\mu \in \{0.501, 0.51, 0.55\}`. Larger ``mu`` gives a
            sparser network. Values outside (0.5, 1) are allowed with a warning (the authors'
            own figures use 0.3 and 1.0).
        impl: ``"auto"`` (default: ``"blocked"`` for CPU tensors, ``"foreach"`` for CUDA tensors),
            ``"blocked"`` (large tensors updated block by block, so each block's accumulator is
            thresholded while still in cache: 4 memory passes like a fused kernel, against 5),
            ``"foreach"`` (one multi-tensor accumulate, then one soft threshold per tensor) or
            ``"reference"`` (the literal per-parameter formula, for checking). All give identical
            values.

    Tuning, as the authors advise: fix ``mu`` (e.g. 0.51), then search for the largest ``c``
    that keeps the test accuracy of a c = 0 run after 1–5 epochs.

    State per parameter: ``accumulator`` (a tensor like the parameter: the only extra buffer),
    ``step`` (int) and ``tau`` (float). Both scalars live on the host, so a step makes no
    host-device synchronisation. ``state_dict()`` / ``load_state_dict()`` resume bit-identically.

    Example:
        >>> opt = GRDA(model.parameters(), lr=0.005, c=0.005, mu=0.51)
        >>> loss_fn(model(x), y).backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        c: float = 0.0,
        mu: float = 0.7,
        *,
        impl: str = "auto",
    ) -> None:
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"GRDA impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        defaults = dict(lr=lr, c=c, mu=mu, impl=impl)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _validate_hyperparameters(self.param_groups[-1])

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("impl", "auto")

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        """Perform one gRDA update on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, c, mu = group["lr"], group["c"], group["mu"]
            for tau, (params, grads, accumulators) in self._advance_group(group, lr, c, mu).items():
                _UPDATES[_resolve_impl(group["impl"], params[0])](params, grads, accumulators, lr=lr, tau=tau)
        return loss

    def _advance_group(
        self, group: dict, lr: float, c: float, mu: float
    ) -> Dict[float, Tuple[List[Tensor], List[Tensor], List[Tensor]]]:
        """Advance step and threshold of each parameter with a gradient; bucket them by threshold.

        Parameters normally share one step count, hence one bucket; a parameter that missed
        steps (its grad was None) gets a bucket of its own.
        """
        buckets: Dict[float, Tuple[List[Tensor], List[Tensor], List[Tensor]]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ValueError("GRDA does not support sparse gradients; use dense gradients")
            state = self.state[p]
            if not state:
                state["accumulator"] = p.detach().clone(memory_format=torch.preserve_format)
                state["step"] = 0
                state["tau"] = 0.0
            state["step"] += 1
            state["tau"] += threshold_increment(state["step"], lr, c, mu)
            params, grads, accumulators = buckets.setdefault(state["tau"], ([], [], []))
            params.append(p)
            grads.append(p.grad)
            accumulators.append(state["accumulator"])
        return buckets

    def thresholds(self) -> List[float]:
        """Current soft threshold tau of each parameter group (largest over its parameters)."""
        out = []
        for group in self.param_groups:
            taus = [self.state[p]["tau"] for p in group["params"] if self.state.get(p)]
            out.append(max(taus, default=0.0))
        return out


def _validate_hyperparameters(group: dict) -> None:
    lr, c, mu = group["lr"], group["c"], group["mu"]
    for name, value in (("lr", lr), ("c", c), ("mu", mu)):
        if isinstance(value, Tensor) or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"GRDA {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"GRDA {name} must be finite, got {name}={value}")
    if lr <= 0:
        raise ValueError(f"GRDA learning rate must be > 0, got lr={lr}")
    if c < 0:
        raise ValueError(f"GRDA c must be >= 0 (0 is plain SGD), got c={c}")
    if mu <= 0:
        raise ValueError(f"GRDA mu must be > 0, got mu={mu}")
    if not 0.5 < mu < 1:
        warnings.warn(
            f"GRDA mu={mu} is outside (0.5, 1), the range its theory covers; "
            "the authors recommend mu in {0.501, 0.51, 0.55}",
            stacklevel=4,
        )


def _reference_update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """The authors' per-parameter formula, kept literal for checking the fast paths."""
    for p, g, a in zip(params, grads, accumulators):
        a.add_(g, alpha=-lr)
        p.copy_(soft_threshold(a, tau))


def _foreach_update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """One multi-tensor accumulate, then a soft threshold written straight into each parameter.

    softshrink(a, tau) = a - tau if a > tau, a + tau if a < -tau, else 0: the same values as
    sign(a) * max(|a| - tau, 0) (round-to-nearest is symmetric in sign), in one pass and
    without temporaries.
    """
    torch._foreach_add_(accumulators, grads, alpha=-lr)
    for p, a in zip(params, accumulators):
        torch._C._nn.softshrink(a, tau, out=p)


def _blocked_update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """The foreach path's arithmetic, with large tensors split into cache-sized blocks.

    Small tensors (and non-contiguous ones, e.g. channels_last) go through the foreach path together.
    """
    small: Tuple[List[Tensor], List[Tensor], List[Tensor]] = ([], [], [])
    for p, g, a in zip(params, grads, accumulators):
        if p.numel() <= BLOCK or not (p.is_contiguous() and g.is_contiguous() and a.is_contiguous()):
            small[0].append(p)
            small[1].append(g)
            small[2].append(a)
            continue
        for p_block, g_block, a_block in zip(p.view(-1).split(BLOCK), g.view(-1).split(BLOCK), a.view(-1).split(BLOCK)):
            a_block.add_(g_block, alpha=-lr)
            torch._C._nn.softshrink(a_block, tau, out=p_block)
    if small[0]:
        _foreach_update(*small, lr=lr, tau=tau)


_UPDATES = {"blocked": _blocked_update, "foreach": _foreach_update, "reference": _reference_update}


def _resolve_impl(impl: str, example: Tensor) -> str:
    if impl != "auto":
        return impl
    return "blocked" if example.device.type == "cpu" else "foreach"
