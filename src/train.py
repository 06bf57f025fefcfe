"""Train a model with gRDA (or a baseline optimizer): one process, torchrun DDP, or SLURM via submitit.

    python src/train.py                                   # digits + MLP + gRDA, < 1 min on 2 CPU cores
    python src/train.py optim=grda optim.mu=0.51
    python src/train.py experiment=cifar10_keras_cnn data.root=../shared/data/cifar10
    torchrun --nproc_per_node=4 src/train.py experiment=cifar100_wrn28x10 data.root=/data/cifar100

The run directory (printed at start and end) holds the resolved config, TensorBoard events,
metrics.csv, checkpoint.pth and summary.json. Running the same command again resumes it.

Reads top-down: config (validate, device) -> data -> model and optimizer -> resume -> the epoch loop -> summary.
One epoch's training and evaluation live in src/loop.py, the checkpoint's contents in src/checkpoint.py, what a run
writes for people in src/run_log.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # `python src/train.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import nn

from grda import GRDA
from src import config as _config  # noqa: F401  (registers the schema and resolvers)
from src import run_log
from src.checkpoint import (
    TrainingState,
    load_weights_from,
    restore_training,
    save_atomic,
    training_checkpoint,
    weights_fingerprint,
    write_text_atomic,
)
from src.config import data_seed
from src.data import build_datasets
from src.data.loaders import build_loaders, set_loader_epoch
from src.distributed import Dist, choose_device, init_distributed, is_peer_failure, max_rank_difference
from src.errors import UserError
from src.loop import TrainContext, check_weights_finite, evaluate, train_one_epoch
from src.models import build_model
from src.optimizers import build_optimizer, effective_lr
from src.pruning import build_pruner, log_l2_over_l1
from src.run_dir import CHECKPOINT, prepare_run_dir, release_run_dirs, resume_state, write_metrics
from src.schedule import build_scheduler
from src.sparsity import layer_sparsity, summarize

log = logging.getLogger("train")


# ---------------------------------------------------------------------------- config


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
    return choose_device(cfg.trainer.device, "trainer.device", world.local_rank)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(cfg: DictConfig, epoch: int, rank: int) -> int:
    """Seed of one epoch on one rank: data order, augmentation and dropout depend on nothing else,
    so a resumed run draws exactly what an uninterrupted one would have."""
    return (data_seed(cfg) * 1_000_003 + epoch * 1009 + rank) % 2**63


# ----------------------------------------------------------------------------- model


def build_training_model(cfg: DictConfig, bundle, device: torch.device) -> nn.Module:
    model = build_model(cfg.model, num_classes=bundle.num_classes, input_shape=tuple(bundle.input_shape))
    if cfg.model.init_from:
        path = to_absolute(cfg.model.init_from)
        load_weights_from(model, path)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    return model


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


# ------------------------------------------------------------------------------- run


@dataclass
class Training:
    """The run's model, optimizer, lr schedule and pruner, and the lr in force."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    pruner: Optional[Any]
    lr: float
    lr_note: str


def build_training(cfg: DictConfig, bundle, device: torch.device, steps_per_epoch: int) -> Training:
    model = build_training_model(cfg, bundle, device)
    lr, lr_note = effective_lr(cfg.optim, cfg.trainer.batch_size)
    optimizer = build_optimizer(model, cfg.optim, lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.trainer.epochs)
    if cfg.trainer.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.trainer.max_steps_per_epoch)
    pruner = build_pruner(model, cfg.prune, cfg.trainer.epochs * steps_per_epoch)
    return Training(model, optimizer, scheduler, pruner, lr, lr_note)


def saved_config(cfg: DictConfig, t: Training) -> Dict[str, Any]:
    """The resolved config as the run directory and checkpoint keep it (with the lr actually used)."""
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    if t.lr_note:
        cfg_dict["optim"]["lr_effective"] = t.lr
        cfg_dict["optim"]["lr_note"] = t.lr_note
    return cfg_dict


def resume(cfg: DictConfig, run_dir: Path, cfg_dict: Dict[str, Any], t: Training) -> Optional[TrainingState]:
    """The saved state of this run directory's checkpoint, loaded into ``t`` (None when the run starts afresh)."""
    ckpt = resume_state(run_dir, cfg_dict, cfg)
    if ckpt is None:
        return None
    state = restore_training(ckpt, t.model, t.optimizer, t.scheduler, t.pruner, run_dir / CHECKPOINT)
    apply_hyperparameters(t.optimizer, t.scheduler, cfg, t.lr)
    return state


def wrap_for_training(cfg: DictConfig, model: nn.Module, world: Dist, device: torch.device) -> nn.Module:
    if world.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if cfg.model.compile else model


def run(cfg: DictConfig) -> Dict[str, Any]:
    started = time.time()
    world = Dist()
    validate(cfg, world)
    device = pick_device(cfg, world)
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    init_distributed(world, device, cfg.trainer.ddp_timeout_s)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir = prepare_run_dir(world.is_main)
    seed_everything(cfg.seed)

    bundle = build_datasets(cfg.data)
    train_loader, test_loader = build_loaders(cfg, bundle, world, device)
    t = build_training(cfg, bundle, device, len(train_loader))
    cfg_dict = saved_config(cfg, t)
    fresh = TrainingState(initial_weights_sha256=weights_fingerprint(t.model))
    state = resume(cfg, run_dir, cfg_dict, t)
    end_epoch = min(cfg.trainer.epochs, cfg.trainer.stop_after_epoch or cfg.trainer.epochs)

    writer = None
    if world.is_main:
        write_text_atomic(OmegaConf.to_yaml(OmegaConf.create(cfg_dict)), run_dir / "config.yaml")
        writer = run_log.open_writer(run_dir, state.global_step if state else 0)
        announce(cfg, run_dir, state or fresh, resumed=state is not None, end_epoch=end_epoch, lr_note=t.lr_note)
    state = state or fresh

    def save(state: TrainingState) -> None:
        wall_time = state.wall_time_s + time.time() - started
        checkpoint = training_checkpoint(t.model, t.optimizer, t.scheduler, t.pruner, state, cfg_dict, wall_time)
        save_atomic(checkpoint, run_dir / CHECKPOINT, fault_point=("checkpoint_write", state.epoch))
        write_metrics(state.history, run_dir)

    ctx = TrainContext(
        wrap_for_training(cfg, t.model, world, device), t.optimizer, device, cfg, world, writer, t.pruner
    )
    run_epochs(ctx, t, state, (train_loader, test_loader, bundle.num_classes), end_epoch, save)
    return finish(cfg, t, state, world, run_dir, state.wall_time_s + time.time() - started, writer)


def announce(cfg: DictConfig, run_dir: Path, state: TrainingState, resumed: bool, end_epoch: int, lr_note: str) -> None:
    what = "starting"
    if resumed:
        done = state.epoch >= end_epoch
        what = f"already complete ({state.epoch} epochs)" if done else f"resuming after epoch {state.epoch}"
    log.info(f"{what}: {cfg.experiment} -> {run_dir}" + (f" ({lr_note})" if lr_note else ""))
    log.info(f"initial weights sha256 {state.initial_weights_sha256}")


def run_epochs(ctx: TrainContext, t: Training, state: TrainingState, data, end_epoch: int, save) -> None:
    """Train from state.epoch to end_epoch, each epoch evaluated and logged; rank 0 calls ``save(state)`` after
    every trainer.checkpoint_every epochs and the last. ``data``: (train loader, test loader, number of classes)."""
    cfg, world = ctx.cfg, ctx.world
    train_loader, test_loader, num_classes = data
    for epoch in range(state.epoch, end_epoch):
        t0 = time.time()
        seed = epoch_seed(cfg, epoch, world.rank)
        torch.manual_seed(seed)
        set_loader_epoch(train_loader, seed, epoch)
        lr_now = t.optimizer.param_groups[0]["lr"]
        train = train_one_epoch(ctx, train_loader, epoch, state.global_step)
        state.global_step = train.pop("global_step")
        check_weights_finite(t.model, epoch)
        test = evaluate(ctx, test_loader, num_classes, epoch)
        t.scheduler.step()
        layers = layer_sparsity(t.model)
        row = epoch_row(epoch, state.global_step, lr_now, train, test, layers, t, time.time() - t0)
        state.history.append(row)
        state.epoch = epoch + 1
        if world.is_main:
            run_log.log_epoch(ctx.writer, row, layers, state.global_step)
            log.info(
                f"epoch {epoch + 1}/{cfg.trainer.epochs} train_loss={row['train_loss']:.4f} "
                f"test_acc={row['test_acc']:.2f} sparsity={row['sparsity']:.2f}% time={row['epoch_time_s']:.1f}s"
            )
            if state.epoch % cfg.trainer.checkpoint_every == 0 or state.epoch == end_epoch:
                save(state)
        if world.enabled:
            dist.barrier()


def epoch_row(epoch: int, step: int, lr: float, train, test, layers, t: Training, seconds: float) -> Dict[str, Any]:
    """One line of metrics.csv."""
    totals = summarize(layers)
    return {
        "epoch": epoch + 1,
        "step": step,
        "lr": lr,
        **train,
        **test,
        "sparsity": totals["sparsity"],
        "sparsity_weights": totals["sparsity_weights"],
        "nonzero_ratio": 1.0 - totals["num_zeros"] / totals["num_params"],
        "threshold": t.optimizer.thresholds()[0] if isinstance(t.optimizer, GRDA) else 0.0,
        "log_l2_l1": log_l2_over_l1(t.model),
        "epoch_time_s": seconds,
    }


def finish(
    cfg: DictConfig, t: Training, state: TrainingState, world: Dist, run_dir: Path, wall_time: float, writer
) -> Dict[str, Any]:
    """summary.json (rank 0), the ranks' agreement under DDP, and the process group closed."""
    rank_diff = max_rank_difference(t.model) if world.enabled else None
    summary = None
    if world.is_main:
        if rank_diff is not None:
            log.info(f"ranks agree: largest parameter difference from rank 0 is {rank_diff:g}")
        summary = run_log.write_summary(
            cfg, t.model, state.history, run_dir, wall_time, t.lr, t.lr_note, rank_diff, state.initial_weights_sha256
        )
        if writer is not None:
            writer.close()
        log.info(f"done: test_acc={summary['test_acc']:.2f}% sparsity={summary['sparsity']:.2f}% -> {run_dir}")
    if world.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return summary or {}


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
