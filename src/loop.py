"""One epoch of training and one pass of evaluation: what the entrypoint's epoch loop calls."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from src import run_log
from src.distributed import Dist, gather_scalars
from src.errors import UserError
from src.faults import INJECTOR


class NonFiniteError(UserError):
    """Training diverged: the loss or the weights stopped being finite."""


class StepLog:
    """Running loss/accuracy kept on the device, for the current logging interval and the whole epoch; read (one
    sync) only when logged."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.epoch_loss = torch.zeros((), device=device, dtype=torch.float64)
        self.epoch_correct = torch.zeros((), device=device, dtype=torch.int64)
        self.epoch_count = 0
        self.reset()

    def reset(self) -> None:
        """Start a logging interval."""
        self.loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self.correct = torch.zeros((), device=self.device, dtype=torch.int64)
        self.count = 0
        self.bad_step = torch.full((), -1, device=self.device, dtype=torch.int64)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, step: int) -> None:
        n = target.shape[0]
        loss = loss.detach()
        self.loss_sum += loss.double() * n
        self.correct += (logits.detach().argmax(1) == target).sum()
        self.count += n
        # Remember the first non-finite step without a host sync.
        bad = (~torch.isfinite(loss)) & (self.bad_step < 0)
        self.bad_step = torch.where(bad, torch.full_like(self.bad_step, step), self.bad_step)

    def close_interval(self) -> None:
        """Add the interval to the epoch's totals (the interval's own sums stay readable until reset)."""
        self.epoch_loss += self.loss_sum
        self.epoch_correct += self.correct
        self.epoch_count += self.count


@dataclass
class TrainContext:
    """What every epoch of a run uses, built once by src/train.py."""

    model: nn.Module  # the module trained: DDP / torch.compile wrappers included
    optimizer: torch.optim.Optimizer
    device: torch.device
    cfg: DictConfig
    world: Dist
    writer: Optional[Any] = None  # TensorBoard SummaryWriter on rank 0
    pruner: Optional[Any] = None
    loss_fn: nn.Module = field(default_factory=nn.CrossEntropyLoss)

    @property
    def amp(self) -> bool:
        return bool(self.cfg.trainer.amp) and self.device.type == "cuda"

    def to_device(self, images: torch.Tensor, target: torch.Tensor):
        images = images.to(self.device, non_blocking=True)
        if self.cfg.model.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, target.to(self.device, non_blocking=True)


def train_step(ctx: TrainContext, images: torch.Tensor, target: torch.Tensor):
    images, target = ctx.to_device(images, target)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
        logits = ctx.model(images)
        loss = ctx.loss_fn(logits, target)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ctx.optimizer.step()
    return loss, logits, target


def train_one_epoch(ctx: TrainContext, loader, epoch: int, global_step: int) -> Dict[str, float]:
    """Train one epoch (0-based ``epoch``); returns the epoch's mean loss, accuracy, throughput and the step count."""
    ctx.model.train()
    log, faults, cfg = StepLog(ctx.device), INJECTOR, ctx.cfg.trainer
    bar = progress_bar(ctx, loader, epoch)
    started, warmup_images = time.perf_counter(), 0
    for i, (images, target) in enumerate(bar if bar is not None else loader):
        if cfg.max_steps_per_epoch is not None and i >= cfg.max_steps_per_epoch:
            break
        loss, logits, target = train_step(ctx, images, target)
        global_step += 1
        if i == 0:  # throughput is measured from the second step on (the first one warms up and compiles)
            started, warmup_images = synchronized_clock(ctx.device), target.shape[0]
        if ctx.pruner is not None:
            ctx.pruner.after_step(global_step)
        if faults is not None:
            loss = faults.loss(loss, epoch + 1, i + 1)
        log.add(loss, logits, target, global_step)
        if faults is not None:
            faults.kill("train_step", epoch + 1, i + 1)
        if global_step % cfg.log_interval == 0:
            close_interval(ctx, log, epoch, global_step, bar)
        if ctx.writer is not None and global_step % cfg.sparsity_interval == 0:
            run_log.step_sparsity(ctx.writer, ctx.model, global_step)
    log.close_interval()
    check_finite(log, epoch, ctx.world)
    elapsed = synchronized_clock(ctx.device) - started
    return {**epoch_means(ctx, log, warmup_images, elapsed), "global_step": global_step}


def close_interval(ctx: TrainContext, log: StepLog, epoch: int, global_step: int, bar) -> None:
    log.close_interval()
    check_finite(log, epoch, ctx.world)
    if ctx.writer is not None:
        run_log.step_scalars(ctx.writer, ctx.optimizer, log, global_step)
    if bar is not None:
        bar.set_postfix(loss=f"{(log.loss_sum / log.count).item():.4f}")
    log.reset()


def synchronized_clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def epoch_means(ctx: TrainContext, log: StepLog, warmup_images: int, elapsed: float) -> Dict[str, float]:
    """The epoch's loss, accuracy and images/s over all ranks."""
    count = torch.tensor(float(log.epoch_count), device=ctx.device, dtype=torch.float64)
    stats = torch.stack([log.epoch_loss, log.epoch_correct.double(), count])
    if ctx.world.enabled:
        torch.distributed.all_reduce(stats)
    loss_sum, correct, count = stats.tolist()
    timed_images = max(count - warmup_images * ctx.world.world_size, 0)
    return {
        "train_loss": loss_sum / max(count, 1),
        "train_acc": 100.0 * correct / max(count, 1),
        "train_img_per_s": timed_images / elapsed if elapsed > 0 else 0.0,
    }


def check_finite(log: StepLog, epoch: int, world: Dist) -> None:
    """Raise on every rank at once when the loss of any rank was non-finite (one tiny all_gather under DDP), so no
    rank is left waiting in a collective for a peer that stopped."""
    steps = gather_scalars(log.bad_step, world)
    rank = next((r for r, step in enumerate(steps) if step >= 0), None)
    if rank is not None:
        where = f" on rank {rank}" if world.enabled else ""
        raise NonFiniteError(
            f"the training loss became non-finite at step {steps[rank]} (epoch {epoch + 1}){where}; the run stopped "
            "and the last good checkpoint is kept. Lower optim.lr or check the data"
        )


def check_weights_finite(model: nn.Module, epoch: int) -> None:
    flags = torch.stack([torch.isfinite(p).all() for p in model.parameters()])
    if not bool(flags.all()):
        names = [n for (n, _), ok in zip(model.named_parameters(), flags.tolist()) if not ok]
        raise NonFiniteError(
            f"weights became non-finite in epoch {epoch + 1} (first: '{names[0]}'); the run stopped and the last "
            "good checkpoint is kept. Lower optim.lr"
        )


@torch.no_grad()
def evaluate(ctx: TrainContext, loader, num_classes: int, epoch: int) -> Dict[str, float]:
    """Test loss, top-1 (and top-5 for more than 10 classes) accuracy over every rank's slice of the test set."""
    ctx.model.eval()
    faults = INJECTOR
    totals = torch.zeros(4, device=ctx.device, dtype=torch.float64)  # loss sum, top1, top5, count
    for i, (images, target) in enumerate(loader):
        if faults is not None:
            faults.kill("eval", epoch + 1, i + 1)
        images, target = ctx.to_device(images, target)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
            logits = ctx.model(images)
        totals[0] += ctx.loss_fn(logits.float(), target).double() * target.shape[0]
        hits = logits.topk(min(5, num_classes), dim=1).indices == target[:, None]
        totals[1] += hits[:, 0].sum()
        totals[2] += hits.any(dim=1).sum()
        totals[3] += target.shape[0]
    if ctx.world.enabled:
        torch.distributed.all_reduce(totals)
    loss_sum, top1, top5, count = totals.tolist()
    out = {"test_loss": loss_sum / max(count, 1), "test_acc": 100.0 * top1 / max(count, 1)}
    if num_classes > 10:
        out["test_acc5"] = 100.0 * top5 / max(count, 1)
    return out


def progress_bar(ctx: TrainContext, loader, epoch: int):
    if not (ctx.world.is_main and ctx.cfg.trainer.progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}/{ctx.cfg.trainer.epochs}", leave=False, dynamic_ncols=True)
