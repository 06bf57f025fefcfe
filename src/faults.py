"""Fault injection for the reliability tests: kill this process at a named point.

Set ``GRDA_FAULT=<point>:<epoch>[:<step>][@<rank>]`` (epochs and steps counted from 1), e.g.
``train_step:2:10`` (during epoch 2, after optimizer step 10 of that epoch), ``eval:1`` (in the middle
of epoch 1's evaluation), ``checkpoint_write:2`` (halfway through writing epoch 2's checkpoint),
``train_step:2:1@1`` (rank 1 only). The process SIGKILLs itself, as a preemption or OOM kill would.
``nan_loss:2:10@1`` does not kill: rank 1 records a NaN training loss for step 10 of epoch 2, as a diverging
batch would. Unset, every check is a comparison with None that returns at once.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("GRDA_FAULT")


def _parse(spec: str):
    rank = None
    if "@" in spec:
        spec, rank_text = spec.split("@", 1)
        rank = int(rank_text)
    point, *numbers = spec.split(":")
    return point, tuple(int(n) for n in numbers), rank


_FAULT = _parse(_SPEC) if _SPEC else None


def armed(point: str, *where: int) -> bool:
    """Whether GRDA_FAULT names this point (and epoch/step, and this process's rank)."""
    if _FAULT is None:
        return False
    want_point, want_where, want_rank = _FAULT
    if want_point != point or tuple(where[: len(want_where)]) != want_where:
        return False
    return want_rank is None or int(os.environ.get("RANK", "0")) == want_rank


def maybe_fail(point: str, *where: int) -> None:
    """SIGKILL this process if GRDA_FAULT names this point."""
    if armed(point, *where):
        os.kill(os.getpid(), signal.SIGKILL)


def corrupt_loss(loss, *where: int):
    """``loss``, or NaN in its place where GRDA_FAULT names ``nan_loss`` at this point."""
    return loss * float("nan") if armed("nan_loss", *where) else loss
