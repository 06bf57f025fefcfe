"""A run's directory: where it lives, the files it keeps, and whether a saved run may be resumed by this config."""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

try:
    import fcntl
except ImportError:  # not POSIX: runs are not guarded against a second process
    fcntl = None

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.checkpoint import load_checkpoint, write_text_atomic
from src.config import RUNTIME_KEYS
from src.errors import CheckpointError, UserError

CHECKPOINT = "checkpoint.pth"
SUMMARY = "summary.json"
SPARSE_EXPORT = "model.sparse.safetensors"  # the final weights, zeros not stored (src/sparse_export.py)
METRICS = "metrics.csv"
LOCK = ".lock"  # held (flock) by the process training in the directory; says which one

log = logging.getLogger("train")
_claimed: Dict[Path, IO[str]] = {}  # run directories this process holds, and their open lock files


def flat_config(cfg: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        else:
            out[key] = v
    return out


def length_independent(flat: Dict[str, Any]) -> bool:
    """Whether the epochs already trained are the same whatever trainer.epochs says: true unless the lr schedule
    (schedule=wrn) or a pruning schedule spans the whole run."""
    return flat.get("schedule.name") != "wrn" and flat.get("prune.name", "none") == "none"


def config_changes(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """Settings that differ; keys only one side knows (added or dropped by another version) are not compared.

    A longer or shorter trainer.epochs is no change when the run's schedules do not depend on it: the same command
    with more epochs continues a finished run."""
    a, b = flat_config(saved), flat_config(current)
    keys = set(a) & set(b) - set(RUNTIME_KEYS)
    if length_independent(a) and length_independent(b):
        keys.discard("trainer.epochs")
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(keys) if a.get(k) != b.get(k)]


def write_metrics(history: List[Dict[str, Any]], run_dir: Path) -> None:
    if not history:
        return
    fields = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(buf.getvalue(), run_dir / METRICS)


def prepare_run_dir(is_main: bool) -> Path:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if is_main:
        probe = run_dir / ".write_test"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise UserError(
                f"run directory '{run_dir}' is not writable ({e.strerror}); set hydra.run.dir=PATH"
            ) from None
        claim_run_dir(run_dir)
    return run_dir


def claim_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir`` until release_run_dirs() or this process ends: a second process on it (the same command
    started twice, a job resubmitted while its first copy still runs) stops with one line instead of interleaving
    checkpoints. An flock on RUN_DIR/.lock, which the kernel drops when the holder dies, however it dies."""
    run_dir = run_dir.resolve()
    if fcntl is None or run_dir in _claimed:
        return
    lock = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise UserError(
            f"run directory '{run_dir}' is in use by {holder}; wait for that run to end (the same command "
            "then resumes from its checkpoint) or set another hydra.run.dir"
        ) from None
    except OSError as e:  # a file system without locks (some network mounts): train, unguarded
        lock.close()
        log.warning(f"cannot lock '{run_dir / LOCK}' ({e.strerror}): nothing stops a second run in this directory")
        return
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    lock.flush()
    _claimed[run_dir] = lock


def release_run_dirs() -> None:
    """Let other processes train in the run directories this process held (the lock file stays)."""
    while _claimed:
        _claimed.popitem()[1].close()


def resume_state(run_dir: Path, cfg_dict: Dict[str, Any], cfg: DictConfig) -> Optional[Dict[str, Any]]:
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this harness; move it away to start afresh")
    changes = config_changes(ckpt.get("config", {}), cfg_dict)
    if changes and not cfg.trainer.allow_config_change:
        raise UserError(
            f"'{run_dir}' holds a run with another config ({'; '.join(changes)}); use another hydra.run.dir, "
            "or add trainer.allow_config_change=true to resume anyway"
        )
    return ckpt
