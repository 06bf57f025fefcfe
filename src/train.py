"""Train a model with gRDA (or a baseline optimizer): one process, torchrun DDP, or SLURM via submitit.

    python src/train.py                                   # digits + MLP + gRDA, < 1 min on 2 CPU cores
    python src/train.py optim=grda optim.mu=0.51
    python src/train.py experiment=cifar10_keras_cnn data.root=../shared/data/cifar10
    torchrun --nproc_per_node=4 src/train.py experiment=cifar100_wrn28x10 data.root=/data/cifar100

The run directory (printed at start and end) holds the resolved config, TensorBoard events,
metrics.csv, checkpoint.pth and summary.json. Running the same command again resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # `python src/train.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import torch
import torch.distributed as dist
from grda import GRDA
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from src import config as _config  # noqa: F401  (registers the schema and resolvers)
from src.checkpoint import load_model_weights, load_weights_from, save_atomic, write_text_atomic
from src.data import build_datasets
from src.data.common import InMemoryImageDataset
from src.errors import UserError
from src.faults import corrupt_loss, maybe_fail
from src.models import build_model
from src.optimizers import build_optimizer, describe, effective_lr
from src.pruning import build_pruner, log_l2_over_l1
from src.schedule import build_scheduler
from src.sparse_export import export_sparse
from src.run_dir import (CHECKPOINT, SPARSE_EXPORT, SUMMARY, prepare_run_dir, release_run_dirs, resume_state,
                         write_metrics)
from src.sparsity import layer_sparsity, summarize

log = logging.getLogger("train")


class NonFiniteError(UserError):
    """Training diverged: the loss or the weights stopped being finite."""


# ----------------------------------------------------------------------------- setup


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


def validate(cfg: DictConfig, world: Dist) -> None:
    t, o = cfg.trainer, cfg.optim
    checks = [
        (t.epochs > 0, f"trainer.epochs must be > 0, got {t.epochs}"),
        (t.batch_size > 0, f"trainer.batch_size must be > 0, got {t.batch_size}"),
        (o.lr > 0, f"optim.lr must be > 0, got {o.lr}"),
        (o.c >= 0, f"optim.c must be >= 0 (0 is plain SGD), got {o.c}"),
        (o.mu > 0, f"optim.mu must be > 0, got {o.mu}"),
        (t.log_interval > 0, f"trainer.log_interval must be > 0, got {t.log_interval}"),
        (t.sparsity_interval > 0, f"trainer.sparsity_interval must be > 0, got {t.sparsity_interval}"),
        (t.checkpoint_every > 0, f"trainer.checkpoint_every must be > 0, got {t.checkpoint_every}"),
        (
            t.stop_after_epoch is None or t.stop_after_epoch > 0,
            f"trainer.stop_after_epoch must be > 0 (or null: train to trainer.epochs), got {t.stop_after_epoch}",
        ),
        (
            t.batch_size % world.world_size == 0,
            f"trainer.batch_size={t.batch_size} is the global batch and must divide by the "
            f"{world.world_size} processes; pick a multiple of {world.world_size}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def pick_device(cfg: DictConfig, world: Dist) -> torch.device:
    want = cfg.trainer.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={want} but no CUDA device is visible; use trainer.device=cpu")
        if want == "cuda":
            want = f"cuda:{world.local_rank}"
        torch.cuda.set_device(torch.device(want))
    elif want != "cpu":
        raise UserError(f"trainer.device must be auto, cpu, cuda or cuda:N, got '{want}'")
    return torch.device(want)


def init_distributed(cfg: DictConfig, world: Dist, device: torch.device) -> None:
    if not world.enabled:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        timeout=timedelta(seconds=cfg.trainer.ddp_timeout_s),
        device_id=device if device.type == "cuda" else None,
    )


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(cfg: DictConfig, epoch: int, rank: int) -> int:
    """Seed of one epoch on one rank: data order, augmentation and dropout depend on nothing else,
    so a resumed run draws exactly what an uninterrupted one would have."""
    return (cfg.seed * 1_000_003 + epoch * 1009 + rank) % 2**63


# ------------------------------------------------------------------------------ data


def auto_workers(cfg: DictConfig, dataset, world: Dist) -> int:
    if cfg.trainer.workers >= 0:
        return cfg.trainer.workers
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if isinstance(base, InMemoryImageDataset) and base.augment is None:
        return 0  # in-memory tensors: worker processes would only add IPC
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(1, world.local_world_size) - 1))


def build_loaders(cfg: DictConfig, bundle, world: Dist, device: torch.device):
    per_rank_batch = cfg.trainer.batch_size // world.world_size
    workers = auto_workers(cfg, bundle.train, world)
    common = dict(
        num_workers=workers,
        pin_memory=cfg.trainer.pin_memory and device.type == "cuda",
        persistent_workers=cfg.trainer.persistent_workers and workers > 0,
    )
    if world.enabled:
        sampler = DistributedSampler(bundle.train, world.world_size, world.rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(bundle.train, generator=torch.Generator())
    train_loader = DataLoader(
        bundle.train, batch_size=per_rank_batch, sampler=sampler, drop_last=False, generator=torch.Generator(), **common
    )
    # Each rank evaluates its own slice of the test set (no padding, so every image counts once).
    test = Subset(bundle.test, range(world.rank, len(bundle.test), world.world_size)) if world.enabled else bundle.test
    test_loader = DataLoader(test, batch_size=cfg.data.eval_batch_size, shuffle=False, **common)
    return train_loader, test_loader


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    else:
        loader.sampler.generator.manual_seed(seed)
    loader.generator.manual_seed(seed + 1)  # worker seeds (augmentation in workers)


# ----------------------------------------------------------------------------- model


def build_training_model(cfg: DictConfig, bundle, device: torch.device) -> nn.Module:
    model = build_model(cfg.model, num_classes=bundle.num_classes, input_shape=tuple(bundle.input_shape))
    if cfg.model.init_from:
        path = to_absolute(cfg.model.init_from)
        load_weights_from(model, path)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    return model


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state_dict (names, dtypes, shapes, values): equal digests, equal starting weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in unwrap(model).state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def apply_hyperparameters(optimizer, scheduler, cfg: DictConfig, lr: float) -> None:
    """After loading saved optimizer/scheduler state, make the config's lr (and c, mu) the ones in force.

    A plain resume changes nothing (the values are the saved ones); with trainer.allow_config_change
    a new optim.lr / optim.c / optim.mu takes effect from the resumed epoch on.
    """
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
        group["lr"] = lr * factor
        if isinstance(optimizer, GRDA):
            group["c"], group["mu"] = float(cfg.optim.c), float(cfg.optim.mu)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def to_absolute(path: str) -> str:
    """Config paths are relative to where the command was started."""
    return str(Path(hydra.utils.to_absolute_path(path)))


def unwrap(model: nn.Module) -> nn.Module:
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return getattr(model, "_orig_mod", model)


# -------------------------------------------------------------------------- training


class StepLog:
    """Running loss/accuracy kept on the device; read (one sync) only when logged."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
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


def train_one_epoch(
    model, loader, optimizer, loss_fn, device, cfg, epoch, global_step, writer, world, log, pruner=None
) -> Dict[str, float]:
    model.train()
    log.reset()
    amp = cfg.trainer.amp and device.type == "cuda"
    channels_last = cfg.model.channels_last
    max_steps = cfg.trainer.max_steps_per_epoch
    epoch_loss = torch.zeros((), device=device, dtype=torch.float64)
    epoch_correct = torch.zeros((), device=device, dtype=torch.int64)
    epoch_count = 0
    bar = progress_bar(cfg, world, loader, epoch)
    started, warmup_images = time.perf_counter(), 0
    for i, (images, target) in enumerate(bar if bar is not None else loader):
        if max_steps is not None and i >= max_steps:
            break
        images = images.to(device, non_blocking=True)
        if channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
            loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        global_step += 1
        if i == 0:  # throughput is measured from the second step on (the first one warms up and compiles)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started, warmup_images = time.perf_counter(), target.shape[0]
        if pruner is not None:
            pruner.after_step(global_step)
        log.add(corrupt_loss(loss, epoch + 1, i + 1), logits, target, global_step)
        maybe_fail("train_step", epoch + 1, i + 1)
        if global_step % cfg.trainer.log_interval == 0:
            epoch_loss += log.loss_sum
            epoch_correct += log.correct
            epoch_count += log.count
            check_finite(log, epoch, world)
            if writer is not None:
                writer.add_scalar("train/loss", (log.loss_sum / log.count).item(), global_step)
                writer.add_scalar("train/acc", (100.0 * log.correct / log.count).item(), global_step)
                writer.add_scalar("lr", optimizer.param_groups[0]["lr"], global_step)
                if isinstance(optimizer, GRDA):
                    writer.add_scalar("grda/threshold", optimizer.thresholds()[0], global_step)
            if bar is not None:
                bar.set_postfix(loss=f"{(log.loss_sum / log.count).item():.4f}")
            log.reset()
        if writer is not None and global_step % cfg.trainer.sparsity_interval == 0:
            totals = summarize(layer_sparsity(unwrap(model)))
            writer.add_scalar("sparsity/global", totals["sparsity"], global_step)
    epoch_loss += log.loss_sum
    epoch_correct += log.correct
    epoch_count += log.count
    check_finite(log, epoch, world)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_time = time.perf_counter() - started
    stats = torch.stack([epoch_loss, epoch_correct.double(), torch.tensor(float(epoch_count), device=device, dtype=torch.float64)])
    if world.enabled:
        dist.all_reduce(stats)
    loss_sum, correct, count = stats.tolist()
    return {
        "train_loss": loss_sum / max(count, 1),
        "train_acc": 100.0 * correct / max(count, 1),
        "train_img_per_s": max(count - warmup_images * world.world_size, 0) / train_time if train_time > 0 else 0.0,
        "global_step": global_step,
    }


def check_finite(log: StepLog, epoch: int, world: Dist) -> None:
    """Raise on every rank at once when the loss of any rank was non-finite (one tiny all_gather under DDP), so no
    rank is left waiting in a collective for a peer that stopped."""
    bad = log.bad_step.reshape(1)
    if world.enabled:
        gathered = [torch.empty_like(bad) for _ in range(world.world_size)]
        dist.all_gather(gathered, bad)
        bad = torch.cat(gathered)
    steps = bad.tolist()
    rank = next((r for r, step in enumerate(steps) if step >= 0), None)
    if rank is not None:
        where = f" on rank {rank}" if world.enabled else ""
        raise NonFiniteError(
            f"the training loss became non-finite at step {steps[rank]} (epoch {epoch + 1}){where}; the run stopped "
            "and the last good checkpoint is kept. Lower optim.lr or check the data"
        )


@torch.no_grad()
def evaluate(model, loader, loss_fn, device, cfg, world: Dist, num_classes: int, epoch: int) -> Dict[str, float]:
    model.eval()
    amp = cfg.trainer.amp and device.type == "cuda"
    totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top1, top5, count
    for i, (images, target) in enumerate(loader):
        maybe_fail("eval", epoch + 1, i + 1)
        images = images.to(device, non_blocking=True)
        if cfg.model.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        totals[0] += loss_fn(logits.float(), target).double() * target.shape[0]
        k = min(5, num_classes)
        topk = logits.topk(k, dim=1).indices
        hits = topk == target[:, None]
        totals[1] += hits[:, 0].sum()
        totals[2] += hits.any(dim=1).sum()
        totals[3] += target.shape[0]
    if world.enabled:
        dist.all_reduce(totals)
    loss_sum, top1, top5, count = totals.tolist()
    out = {"test_loss": loss_sum / max(count, 1), "test_acc": 100.0 * top1 / max(count, 1)}
    if num_classes > 10:
        out["test_acc5"] = 100.0 * top5 / max(count, 1)
    return out


def check_weights_finite(model: nn.Module, epoch: int) -> None:
    flags = torch.stack([torch.isfinite(p).all() for p in model.parameters()])
    if not bool(flags.all()):
        names = [n for (n, _), ok in zip(model.named_parameters(), flags.tolist()) if not ok]
        raise NonFiniteError(
            f"weights became non-finite in epoch {epoch + 1} (first: '{names[0]}'); the run stopped and the last "
            "good checkpoint is kept. Lower optim.lr"
        )


def progress_bar(cfg, world: Dist, loader, epoch: int):
    if not (world.is_main and cfg.trainer.progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.trainer.epochs}", leave=False, dynamic_ncols=True)


# ------------------------------------------------------------------------- run files


def sparsity_figure(layers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(layers)), 3.5))
    ax.bar(range(len(layers)), [l.sparsity for l in layers], color=["C0" if l.is_weight else "C1" for l in layers])
    ax.set_ylim(0, 100)
    ax.set_ylabel("zeros (%)")
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([l.name for l in layers], rotation=90, fontsize=6)
    ax.set_title("per-layer sparsity (blue: conv/linear weights)")
    fig.tight_layout()
    return fig


def log_epoch(writer, row: Dict[str, Any], layers, step: int) -> None:
    for key in ("train_loss", "test_loss"):
        writer.add_scalar(f"{key.split('_')[0]}/loss_epoch", row[key], step)
    writer.add_scalar("test/acc", row["test_acc"], step)
    if "test_acc5" in row:
        writer.add_scalar("test/acc5", row["test_acc5"], step)
    writer.add_scalar("sparsity/global", row["sparsity"], step)
    writer.add_scalar("sparsity/weights", row["sparsity_weights"], step)
    writer.add_scalar("norms/log_l2_over_l1", row["log_l2_l1"], step)
    for l in layers:
        writer.add_scalar(f"sparsity/{l.name}", l.sparsity, step)
    writer.add_figure("sparsity/per_layer", sparsity_figure(layers), step, close=True)
    writer.flush()


# ----------------------------------------------------------------------------- main


def run(cfg: DictConfig) -> Dict[str, Any]:
    started = time.time()
    world = Dist()
    validate(cfg, world)
    device = pick_device(cfg, world)
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    init_distributed(cfg, world, device)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = prepare_run_dir(world.is_main)
    seed_everything(cfg.seed)

    bundle = build_datasets(cfg.data)
    train_loader, test_loader = build_loaders(cfg, bundle, world, device)
    model = build_training_model(cfg, bundle, device)
    lr, lr_note = effective_lr(cfg.optim, cfg.trainer.batch_size)
    optimizer = build_optimizer(model, cfg.optim, lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.trainer.epochs)
    steps_per_epoch = len(train_loader)
    if cfg.trainer.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.trainer.max_steps_per_epoch)
    pruner = build_pruner(model, cfg.prune, cfg.trainer.epochs * steps_per_epoch)
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    if lr_note:
        cfg_dict["optim"]["lr_effective"] = lr
        cfg_dict["optim"]["lr_note"] = lr_note

    end_epoch = min(cfg.trainer.epochs, cfg.trainer.stop_after_epoch or cfg.trainer.epochs)
    start_epoch, global_step, history, elapsed_before = 0, 0, [], 0.0
    initial_weights = weights_fingerprint(model)
    ckpt = resume_state(run_dir, cfg_dict, cfg)
    if ckpt is not None:
        load_model_weights(model, ckpt["model"], run_dir / CHECKPOINT)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        apply_hyperparameters(optimizer, scheduler, cfg, lr)
        if pruner is not None:
            pruner.load_state_dict(ckpt["pruner"])
        start_epoch, global_step = ckpt["epoch"], ckpt["global_step"]
        history, elapsed_before = list(ckpt["history"]), float(ckpt.get("wall_time_s", 0.0))
        initial_weights = ckpt.get("initial_weights_sha256", "unknown (saved by an older version)")
        torch.set_rng_state(ckpt["rng"]["torch"])

    train_model = model
    if world.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.model.compile:
        train_model = torch.compile(train_model)

    writer = None
    if world.is_main:
        write_text_atomic(OmegaConf.to_yaml(OmegaConf.create(cfg_dict)), run_dir / "config.yaml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=global_step if global_step else None)
        state = "starting"
        if ckpt is not None:
            done = start_epoch >= end_epoch
            state = f"already complete ({start_epoch} epochs)" if done else f"resuming after epoch {start_epoch}"
        log.info(f"{state}: {cfg.experiment} -> {run_dir}" + (f" ({lr_note})" if lr_note else ""))
        log.info(f"initial weights sha256 {initial_weights}")

    loss_fn = nn.CrossEntropyLoss()
    step_log = StepLog(device)
    for epoch in range(start_epoch, end_epoch):
        t0 = time.time()
        seed = epoch_seed(cfg, epoch, world.rank)
        torch.manual_seed(seed)
        set_loader_epoch(train_loader, seed, epoch)
        lr_now = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            train_model, train_loader, optimizer, loss_fn, device, cfg, epoch, global_step, writer, world, step_log, pruner
        )
        global_step = train.pop("global_step")
        check_weights_finite(model, epoch)
        test = evaluate(train_model, test_loader, loss_fn, device, cfg, world, bundle.num_classes, epoch)
        scheduler.step()
        layers = layer_sparsity(model)
        totals = summarize(layers)
        row = {
            "epoch": epoch + 1,
            "step": global_step,
            "lr": lr_now,
            **train,
            **test,
            "sparsity": totals["sparsity"],
            "sparsity_weights": totals["sparsity_weights"],
            "nonzero_ratio": 1.0 - totals["num_zeros"] / totals["num_params"],
            "threshold": optimizer.thresholds()[0] if isinstance(optimizer, GRDA) else 0.0,
            "log_l2_l1": log_l2_over_l1(model),
            "epoch_time_s": time.time() - t0,
        }
        history.append(row)
        if world.is_main:
            log_epoch(writer, row, layers, global_step)
            log.info(
                f"epoch {epoch + 1}/{cfg.trainer.epochs} train_loss={row['train_loss']:.4f} "
                f"test_acc={row['test_acc']:.2f} sparsity={row['sparsity']:.2f}% time={row['epoch_time_s']:.1f}s"
            )
            last = epoch + 1 == end_epoch
            if (epoch + 1) % cfg.trainer.checkpoint_every == 0 or last:
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "global_step": global_step,
                        "history": history,
                        "config": cfg_dict,
                        "wall_time_s": elapsed_before + time.time() - started,
                        "rng": {"torch": torch.get_rng_state()},
                        "pruner": pruner.state_dict() if pruner is not None else None,
                        "initial_weights_sha256": initial_weights,
                    },
                    run_dir / CHECKPOINT,
                    fault_point=("checkpoint_write", epoch + 1),
                )
                write_metrics(history, run_dir)
        if world.enabled:
            dist.barrier()

    rank_diff = max_rank_difference(model) if world.enabled else None
    summary = None
    if world.is_main:
        if rank_diff is not None:
            log.info(f"ranks agree: largest parameter difference from rank 0 is {rank_diff:g}")
        summary = write_summary(
            cfg, model, history, run_dir, elapsed_before + time.time() - started, lr, lr_note, rank_diff,
            initial_weights,
        )

        if writer is not None:
            writer.close()
        log.info(f"done: test_acc={summary['test_acc']:.2f}% sparsity={summary['sparsity']:.2f}% -> {run_dir}")
    if world.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return summary or {}


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated by tensors when on a GPU, else this process's peak resident set."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


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


def write_summary(cfg, model, history, run_dir: Path, wall_time: float, lr: float, lr_note: str,
                  rank_diff: Optional[float] = None, initial_weights: Optional[str] = None) -> Dict[str, Any]:
    layers = layer_sparsity(model)
    totals = summarize(layers)
    last = history[-1] if history else {}
    export = export_sparse({k: v.detach().cpu() for k, v in model.state_dict().items()}, run_dir / SPARSE_EXPORT)
    summary = {
        "experiment": cfg.experiment,
        "test_acc": last.get("test_acc"),
        "test_acc5": last.get("test_acc5"),
        "test_loss": last.get("test_loss"),
        "train_loss": last.get("train_loss"),
        "sparsity": totals["sparsity"],
        "sparsity_weights": totals["sparsity_weights"],
        "num_params": totals["num_params"],
        "num_zeros": totals["num_zeros"],
        "epochs": last.get("epoch", 0),
        "optimizer": describe(cfg.optim, lr, lr_note),
        "prune": OmegaConf.to_container(cfg.prune) if cfg.prune.name != "none" else None,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "initial_weights_sha256": initial_weights,
        "wall_time_s": wall_time,
        "checkpoint": CHECKPOINT,
        "checkpoint_bytes": (run_dir / CHECKPOINT).stat().st_size if (run_dir / CHECKPOINT).exists() else None,
        "export": SPARSE_EXPORT,
        "export_bytes": export["export_bytes"],
        "peak_memory_mb": peak_memory_mb(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "ddp_max_param_diff": rank_diff,
        "per_layer": {k: {kk: v[kk] for kk in ("numel", "zeros", "sparsity")} for k, v in totals["per_layer"].items()},
    }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", run_dir / SUMMARY)
    return summary


def is_peer_failure(e: BaseException) -> bool:
    if isinstance(e, dist.DistError):
        return True
    text = str(e).lower()
    return any(k in text for k in ("gloo", "nccl", "connection", "timed out", "timeout", "peer"))


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> Optional[float]:
    try:
        summary = run(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (RuntimeError, dist.DistError) as e:
        if Dist().enabled and is_peer_failure(e):
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            print(
                f"error: rank {Dist().rank}: lost contact with the other ranks (one of them died or hung "
                f"past trainer.ddp_timeout_s); the last good checkpoint is kept. Cause: {reason}",
                file=sys.stderr,
                flush=True,
            )
            os._exit(3)  # skip atexit/NCCL teardown, which can hang on a broken group
        raise
    finally:
        release_run_dirs()
    # Returned for Hydra sweepers (e.g. an Optuna sweep maximising accuracy).
    return summary.get("test_acc") if summary else None


def check_output_location(argv: List[str]) -> None:
    """Fail with one line, before Hydra creates anything, when the run directory cannot be created."""
    wanted = [a.split("=", 1)[1] for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    for target in wanted or ["runs"]:
        path = Path(target).expanduser().absolute()
        while not path.exists() and path != path.parent:
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            print(
                f"error: cannot create the run directory '{target}': '{path}' is not a writable directory; "
                "pick another with hydra.run.dir=PATH",
                file=sys.stderr,
            )
            sys.exit(2)


if __name__ == "__main__":
    check_output_location(sys.argv[1:])
    main()
