"""Fault injection for the reliability tests: kill this process, or poison a loss, at a named point.

Set ``GRDA_FAULT=<point>:<epoch>[:<step>][@<rank>]`` (epochs and steps counted from 1), e.g.
``train_step:2:10`` (during epoch 2, after optimizer step 10 of that epoch), ``eval:1`` (in the middle
of epoch 1's evaluation), ``checkpoint_write:2`` (halfway through writing epoch 2's checkpoint),
``train_step:2:1@1`` (rank 1 only). The process SIGKILLs itself, as a preemption or OOM kill would.
``nan_loss:2:10@1`` does not kill: rank 1 records a NaN training loss for step 10 of epoch 2, as a diverging
batch would.

One interface: ``INJECTOR`` is None unless GRDA_FAULT is set, so a caller pays one ``is not None`` test:

    faults = INJECTOR
    ...
    if faults is not None:
        faults.kill("train_step", epoch, step)
"""

from __future__ import annotations

import os
import signal
from typing import Optional, Tuple


class FaultInjector:
    """The fault that GRDA_FAULT names, and the points that trigger it."""

    def __init__(self, spec: str) -> None:
        self.rank: Optional[int] = None
        if "@" in spec:
            spec, rank_text = spec.split("@", 1)
            self.rank = int(rank_text)
        self.point, *numbers = spec.split(":")
        self.where: Tuple[int, ...] = tuple(int(n) for n in numbers)

    def armed(self, point: str, *where: int) -> bool:
        """Whether the fault is at this point (and epoch/step, and this process's rank)."""
        if point != self.point or tuple(where[: len(self.where)]) != self.where:
            return False
        return self.rank is None or int(os.environ.get("RANK", "0")) == self.rank

    def kill(self, point: str, *where: int) -> None:
        """SIGKILL this process if the fault is at this point."""
        if self.armed(point, *where):
            os.kill(os.getpid(), signal.SIGKILL)

    def loss(self, loss, *where: int):
        """``loss``, or NaN in its place if the fault is ``nan_loss`` at this point."""
        return loss * float("nan") if self.armed("nan_loss", *where) else loss


INJECTOR: Optional[FaultInjector] = FaultInjector(os.environ["GRDA_FAULT"]) if os.environ.get("GRDA_FAULT") else None
