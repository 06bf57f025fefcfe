"""What a run writes for people and tools, on rank 0: TensorBoard scalars and figures, and summary.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from grda import GRDA
from src.checkpoint import write_text_atomic
from src.distributed import unwrap
from src.optimizers import describe
from src.run_dir import CHECKPOINT, SPARSE_EXPORT, SUMMARY
from src.sparse_export import export_sparse
from src.sparsity import layer_sparsity, summarize


def open_writer(run_dir: Path, global_step: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=global_step if global_step else None)


def step_scalars(writer, optimizer, log, global_step: int) -> None:
    """The logging interval's training loss and accuracy, the lr and gRDA's threshold."""
    writer.add_scalar("train/loss", (log.loss_sum / log.count).item(), global_step)
    writer.add_scalar("train/acc", (100.0 * log.correct / log.count).item(), global_step)
    writer.add_scalar("lr", optimizer.param_groups[0]["lr"], global_step)
    if isinstance(optimizer, GRDA):
        writer.add_scalar("grda/threshold", optimizer.thresholds()[0], global_step)


def step_sparsity(writer, model: nn.Module, global_step: int) -> None:
    writer.add_scalar("sparsity/global", summarize(layer_sparsity(unwrap(model)))["sparsity"], global_step)


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
    """An epoch's row (losses, accuracy, sparsity, norms) and per-layer sparsity, as scalars and a bar chart."""
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


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated by tensors when on a GPU, else this process's peak resident set."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def environment() -> Dict[str, Any]:
    """What the numbers of a CPU run depend on besides the code: the processor and the numeric libraries. Two
    machines can train the same command to different last digits (results/cifar10_keras_cnn.md)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> Optional[str]:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        **{name: installed(name) for name in ("torch", "torchvision", "numpy", "pillow", "grda")},
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def write_summary(
    cfg,
    model,
    history,
    run_dir: Path,
    wall_time: float,
    lr: float,
    lr_note: str,
    rank_diff: Optional[float] = None,
    initial_weights: Optional[str] = None,
) -> Dict[str, Any]:
    """summary.json: the run's last epoch, final sparsity, files and costs; the sparse export written beside it."""
    totals = summarize(layer_sparsity(model))
    last = history[-1] if history else {}
    export = export_sparse({k: v.detach().cpu() for k, v in model.state_dict().items()}, run_dir / SPARSE_EXPORT)
    summary = {
        "experiment": cfg.experiment,
        **{k: last.get(k) for k in ("test_acc", "test_acc5", "test_loss", "train_loss")},
        **{k: totals[k] for k in ("sparsity", "sparsity_weights", "num_params", "num_zeros")},
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
        "environment": environment(),
        "per_layer": {k: {kk: v[kk] for kk in ("numel", "zeros", "sparsity")} for k, v in totals["per_layer"].items()},
    }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", run_dir / SUMMARY)
    return summary
