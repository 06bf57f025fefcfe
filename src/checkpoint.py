"""Checkpoints: the training checkpoint's contents, atomic writes, safe loads (weights_only=True), and clear errors
for bad files."""

from __future__ import annotations

import os
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

import torch
from torch import Tensor, nn

from src.errors import CheckpointError
from src.faults import INJECTOR
from src.sparsity import clean_name


def atomic_replace(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` for a temp file beside ``path``, fsync it, then rename it over ``path``.

    A crash at any point leaves either the old file or the new one, never a partial file; leftover
    temp files of earlier crashes are removed first. The file gets the mode the user's umask gives a new file
    (not mkstemp's 0600, which would hide a run's results from the rest of a lab group).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = _new_temp_file(path)
    mode = stat.S_IMODE(os.stat(tmp).st_mode)  # 0666 less the umask, as the kernel applied it
    try:
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) replace the file with a 0600 one
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _new_temp_file(path: Path) -> str:
    """An empty, new temp file beside ``path``, created 0666 less the umask (read race-free by the kernel)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(tmp)
        except FileExistsError:
            continue


def save_atomic(obj: Any, path: str | os.PathLike, fault_point: tuple = ()) -> None:
    """torch.save ``obj`` to ``path`` atomically (see atomic_replace)."""

    def write(tmp: str) -> None:
        torch.save(obj, tmp)
        if fault_point and INJECTOR is not None and INJECTOR.armed(*fault_point):
            with open(tmp, "rb+") as f:
                f.truncate(os.path.getsize(tmp) // 2)  # a half-written file, as a crash mid-write leaves it
            INJECTOR.kill(*fault_point)

    atomic_replace(path, write)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Atomically replace a small text file (summary.json, metrics.csv)."""
    atomic_replace(path, lambda tmp: Path(tmp).write_text(text))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True; a missing or unreadable file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: '{path}' (check the path)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on an unusual pickle protocol
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any failure to parse means the file is not a usable checkpoint
        text = str(e).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else type(e).__name__
        raise CheckpointError(
            f"'{path}' is not a readable PyTorch checkpoint (truncated, corrupt or another format): {reason}"
        ) from None


def extract_state_dict(obj: Any, path: str | os.PathLike = "checkpoint") -> Dict[str, Tensor]:
    """Model weights from a harness checkpoint ({'model': ...}), an authors' file ({'state_dict': ...})
    or a bare state_dict; DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes removed."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"'{path}' holds no model weights: expected a state_dict, "
            "{'model': state_dict} or {'state_dict': state_dict}"
        )
    return {clean_name(k): v for k, v in obj.items()}


def load_model_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], path: str | os.PathLike = "checkpoint"
) -> None:
    """Load weights strictly; a mismatch names the first missing/unexpected key or shape."""
    target = model.module if hasattr(model, "module") else model
    target = getattr(target, "_orig_mod", target)
    expected = target.state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise CheckpointError(f"'{path}' does not fit this model: missing key '{key}' (is it from another model?)")
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"'{path}' does not fit this model: '{key}' has shape {tuple(state_dict[key].shape)} "
                f"in the file but {tuple(value.shape)} in the model (another model or number of classes?)"
            )
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"'{path}' does not fit this model: unexpected key '{unexpected[0]}' (is it from another model?)"
        )
    target.load_state_dict(state_dict, strict=True)


def load_weights_from(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``model``'s weights from the checkpoint file at ``path`` (model.init_from): any error names the file."""
    load_model_weights(model, extract_state_dict(load_checkpoint(path), path), path)


# ------------------------------------------------------------------------ the training checkpoint


@dataclass
class TrainingState:
    """Where a run stands: what a checkpoint carries besides the model, optimizer, scheduler and pruner states."""

    epoch: int = 0  # epochs finished
    global_step: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)  # one row per finished epoch (metrics.csv)
    wall_time_s: float = 0.0  # training time of the processes before this one
    initial_weights_sha256: str = ""  # weights_fingerprint of the model before its first step


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state_dict (names, dtypes, shapes, values): equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{clean_name(name)}|{t.dtype}|{tuple(t.shape)}|".encode())  # the flat shape (first runs')
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def training_checkpoint(
    model: nn.Module, optimizer, scheduler, pruner, state: TrainingState, config: Dict[str, Any], wall_time_s: float
) -> Dict[str, Any]:
    """The dict saved after an epoch: everything a resumed run needs to continue bit-identically."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": state.epoch,
        "global_step": state.global_step,
        "history": state.history,
        "config": config,
        "wall_time_s": wall_time_s,
        "rng": {"torch": torch.get_rng_state()},
        "pruner": pruner.state_dict() if pruner is not None else None,
        "initial_weights_sha256": state.initial_weights_sha256,
    }


def restore_training(
    ckpt: Mapping[str, Any], model: nn.Module, optimizer, scheduler, pruner, path: str | os.PathLike
) -> TrainingState:
    """Load a training checkpoint's states into the run's objects; the run continues from the returned state."""
    load_model_weights(model, ckpt["model"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if pruner is not None:
        pruner.load_state_dict(ckpt["pruner"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    return TrainingState(
        epoch=ckpt["epoch"],
        global_step=ckpt["global_step"],
        history=list(ckpt["history"]),
        wall_time_s=float(ckpt.get("wall_time_s", 0.0)),
        initial_weights_sha256=ckpt.get("initial_weights_sha256", "unknown (saved by an older version)"),
    )
