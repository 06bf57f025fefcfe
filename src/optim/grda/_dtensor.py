"""DTensor helpers shared by the optimizer and the zero counters (FSDP2, tensor parallelism), without importing
torch.distributed: a DTensor can only exist once its module has been imported."""

from __future__ import annotations

import sys

from torch import Tensor


def dtensor_type():
    """DTensor's class if its module has been imported (no DTensor can exist before), else None."""
    module = sys.modules.get("torch.distributed.tensor") or sys.modules.get("torch.distributed._tensor")  # torch < 2.5
    return getattr(module, "DTensor", None)


def local_tensor(t: Tensor) -> Tensor:
    """A DTensor's local shard."""
    local = getattr(t, "_local_tensor", None)  # what to_local() returns under no_grad, without making a view
    return local if isinstance(local, Tensor) else t.to_local()
