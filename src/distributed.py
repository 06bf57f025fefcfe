"""Process-group facts and helpers: one process is rank 0 of 1; torchrun and Hydra's submitit launcher give more."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from src.errors import UserError


class Dist:
    """Rank facts for this process (a single process is rank 0 of 1)."""

    def __init__(self) -> None:
        if "RANK" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
            # Launched by Hydra's submitit launcher (SLURM or local): one task per GPU, and
            # submitit knows the ranks and the master node; export them for init_process_group.
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world_size)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def choose_device(want: str, option: str = "trainer.device", local_rank: int = 0) -> torch.device:
    """The device that ``want`` names (auto | cpu | cuda | cuda:N; plain ``cuda`` is this process's local rank's GPU),
    made current on CUDA; a UserError naming ``option`` (a config key, or a flag such as ``--device``) otherwise."""
    said = f"{option} {want}" if option.startswith("-") else f"{option}={want}"
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            use_cpu = f"{option} cpu" if option.startswith("-") else f"{option}=cpu"
            raise UserError(f"{said} but no CUDA device is visible; use {use_cpu}")
        try:
            device = torch.device(f"cuda:{local_rank}" if want == "cuda" else want)
        except RuntimeError:
            device = None
        if device is not None:
            torch.cuda.set_device(device)
            return device
    elif want == "cpu":
        return torch.device("cpu")
    raise UserError(f"{option} must be auto, cpu, cuda or cuda:N, got '{want}'")


def init_distributed(world: Dist, device: torch.device, timeout_s: int) -> None:
    if not world.enabled:
        return
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )


def gather_scalars(value: torch.Tensor, world: Dist) -> list:
    """Every rank's value of a one-element tensor, in rank order, on every rank (just [value] on one process)."""
    value = value.reshape(1)
    if not world.enabled:
        return value.tolist()
    gathered = [torch.empty_like(value) for _ in range(world.world_size)]
    dist.all_gather(gathered, value)
    return torch.cat(gathered).tolist()


@torch.no_grad()
def max_rank_difference(model: nn.Module) -> float:
    """Largest |w - w_rank0| over all parameters and ranks (0.0 when DDP kept them in sync)."""
    diff = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    for p in model.parameters():
        reference = p.detach().clone()
        dist.broadcast(reference, src=0)
        diff = torch.maximum(diff, (p.detach() - reference).abs().max().double())
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def is_peer_failure(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return any(k in text for k in ("gloo", "nccl", "connection", "timed out", "timeout", "peer"))


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP and torch.compile wrappers."""
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)
