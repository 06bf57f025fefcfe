"""Compact export of a sparse model: a safetensors file holding only the weights, zeros not stored.

    from src.sparse_export import export_checkpoint, export_sparse, load_sparse
    export_checkpoint("runs/default/base/checkpoint.pth", "model.sparse.safetensors")
    state_dict = load_sparse("model.sparse.safetensors")      # dense tensors, ready for load_state_dict

Only the model's weights and buffers are written (no optimizer state such as gRDA's accumulator,
no scheduler, no history). Each floating-point tensor is stored one of two ways, whichever is smaller:

``sparse``  ``NAME::mask``    uint8, ``np.packbits`` of ``t != 0`` over the flattened tensor (big-endian
                              bit order, ``ceil(numel / 8)`` bytes);
            ``NAME::values``  the nonzero entries in the tensor's own dtype, in row-major order;
``dense``   ``NAME``          the tensor itself (also every non-floating tensor, e.g. BatchNorm's
                              ``num_batches_tracked``, every scalar and empty tensor, and dtypes other
                              than float16/bfloat16/float32/float64).

The safetensors metadata (str -> str) holds ``format`` (``grda-sparse``), ``format_version`` (``1``)
and ``tensors``: JSON ``{name: {"encoding": "sparse"|"dense", "dtype": ..., "shape": [...],
"nnz": ...}}`` in the state_dict's order; harness exports add ``config`` (the training config, JSON)
and ``source`` (the checkpoint's file name).

:func:`load_sparse` restores every value bit for bit (NaNs and their payloads, infinities, every nonzero),
except that **zeros are stored as +0.0**: a ``-0.0`` in the input (from multiplying a negative weight by a
zero mask, or from older soft thresholds) comes back as ``+0.0``, numerically equal (``-0.0 == 0.0``), and
costs nothing. gRDA's optimizer writes ``+0.0`` itself. Exports written before this rule may carry a
``NAME::negzero`` mask (``np.packbits`` of the zeros' sign bits, flagged ``"negzero": true``); they still
load, with their ``-0.0`` restored.

At 90% zeros a float32 tensor shrinks to 1/32 (mask) + 0.1 (values) = 13.1% of its dense size:
ResNet-50 (25.6 M parameters, 102.4 MB dense) with 90% of its conv/linear weights zeroed exports to
13.7 MB (13,695,128 bytes), whether its zeros are +0.0 or -0.0. A tensor whose sparse form would not be smaller
(payload plus header entries) is stored dense.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from src.checkpoint import atomic_replace, extract_state_dict, load_checkpoint
from src.errors import CheckpointError, UserError

FORMAT = "grda-sparse"
FORMAT_VERSION = "1"
SEP = "::"
HEADER_ENTRY_BYTES = 64  # safetensors header bytes per stored tensor, besides its name

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "describe_export",
    "export_checkpoint",
    "export_sparse",
    "load_sparse",
    "read_metadata",
]


# ------------------------------------------------------------------------------ encoding


_INT_VIEWS = {
    torch.float16: (torch.int16, np.int16),
    torch.bfloat16: (torch.int16, np.int16),
    torch.float32: (torch.int32, np.int32),
    torch.float64: (torch.int64, np.int64),
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _encode(name: str, t: Tensor) -> tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The stored tensors and the metadata entry of one state_dict tensor."""
    t = t.detach().to("cpu")
    info: Dict[str, Any] = {"encoding": "dense", "dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
    n = t.numel()
    if t.dtype in _INT_VIEWS and n > 0:
        # Work on the bit patterns (numpy has no bfloat16): an entry is zero when all bits but the
        # sign bit are 0, so NaNs count as nonzero; zeros are made +0.0 (all bits 0).
        int_dtype, np_int = _INT_VIEWS[t.dtype]
        bits = t.contiguous().reshape(-1).view(int_dtype).numpy()
        sign = np_int(np.iinfo(np_int).min)  # only the sign bit set
        nonzero = (bits & ~sign) != 0
        nnz = int(np.count_nonzero(nonzero))
        # Payload plus the header entries the extra stored tensor costs (about the name + 64 bytes).
        sparse_bytes = math.ceil(n / 8) + nnz * t.element_size() + len(name) + HEADER_ENTRY_BYTES
        if t.dim() > 0 and sparse_bytes < n * t.element_size():
            values = torch.from_numpy(bits[nonzero]).view(t.dtype)
            stored = {f"{name}{SEP}mask": torch.from_numpy(np.packbits(nonzero)), f"{name}{SEP}values": values}
            info.update(encoding="sparse", nnz=nnz)
            return stored, info
        if nnz < n and (bits[~nonzero] != 0).any():  # a -0.0 stored dense: stored as +0.0 too
            canonical = np.where(nonzero, bits, np_int(0))
            return {name: torch.from_numpy(canonical).view(t.dtype).reshape(t.shape)}, info
    # A fresh, contiguous copy: safetensors refuses views and tensors sharing storage (tied weights).
    return {name: t.contiguous().clone()}, info


def _decode(name: str, info: Mapping[str, Any], stored: Mapping[str, Tensor], path: Any) -> Tensor:
    shape = tuple(int(s) for s in info["shape"])
    try:
        if info["encoding"] == "dense":
            t = stored[name]
            if list(t.shape) != list(shape) or _dtype_name(t.dtype) != info["dtype"]:
                raise ValueError(f"stored {_dtype_name(t.dtype)} {list(t.shape)}")
            return t
        if info["encoding"] != "sparse":
            raise ValueError(f"unknown encoding {info['encoding']!r}")
        n = math.prod(shape)
        values = stored[f"{name}{SEP}values"]
        dtype = values.dtype
        if _dtype_name(dtype) != info["dtype"] or dtype not in _INT_VIEWS:
            raise ValueError(f"values stored as {_dtype_name(dtype)}")
        int_dtype, np_int = _INT_VIEWS[dtype]
        mask = np.unpackbits(stored[f"{name}{SEP}mask"].numpy(), count=n).view(bool)
        if int(np.count_nonzero(mask)) != values.numel():
            raise ValueError("mask and values disagree")
        bits = np.zeros(n, dtype=np_int)
        bits[mask] = values.reshape(-1).view(int_dtype).numpy()
        if info.get("negzero"):
            signs = np.unpackbits(stored[f"{name}{SEP}negzero"].numpy(), count=n - values.numel()).view(bool)
            zeros = np.flatnonzero(~mask)
            bits[zeros[signs]] = np.iinfo(np_int).min  # -0.0: only the sign bit set
        flat = torch.from_numpy(bits).view(dtype)
        return flat.reshape(shape)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"'{path}' is a damaged sparse export: tensor '{name}' cannot be restored ({e})"
        ) from None


# ------------------------------------------------------------------------------ public API


def export_sparse(
    state_dict: Mapping[str, Tensor], path: str | os.PathLike, extra_metadata: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]:
    """Write ``state_dict`` to ``path`` (safetensors, zeros not stored), atomically.

    Returns ``{"path", "export_bytes", "dense_bytes", "dense_fp32_bytes", "ratio", "num_tensors",
    "sparse_tensors", "dense_tensors"}``; ``ratio`` is export_bytes / dense_bytes, where dense_bytes
    is the raw size of the tensors in their own dtypes and dense_fp32_bytes counts 4 bytes per element.
    """
    from safetensors.torch import save_file

    if not isinstance(state_dict, Mapping) or not state_dict:
        raise UserError("nothing to export: expected a non-empty state_dict (name -> tensor)")
    stored: Dict[str, Tensor] = {}
    layout: Dict[str, Any] = {}
    for name, t in state_dict.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            raise UserError(f"cannot export entry {name!r}: expected str -> Tensor, got {type(t).__name__}")
        if SEP in name:
            raise UserError(f"cannot export tensor '{name}': '{SEP}' is reserved in names of the sparse format")
        if t.layout != torch.strided:
            raise UserError(f"cannot export tensor '{name}': layout {t.layout} (convert it with .to_dense())")
        parts, info = _encode(name, t)
        stored.update(parts)
        layout[name] = info
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "tensors": json.dumps(layout)}
    for key, value in (extra_metadata or {}).items():
        if key in metadata:
            raise UserError(f"metadata key '{key}' is reserved")
        metadata[str(key)] = str(value)

    path = Path(path)

    def write(tmp: str) -> None:
        save_file(stored, tmp, metadata=metadata)

    try:
        atomic_replace(path, write)
    except (ValueError, TypeError) as e:  # e.g. a dtype safetensors cannot hold
        raise UserError(f"cannot export to '{path}': {' '.join(str(e).split())}") from None
    except OSError as e:  # disk full, permissions, a directory in the way
        raise UserError(f"cannot write '{path}': {e.strerror or e}") from None

    tensors = list(state_dict.values())
    dense_bytes = sum(t.numel() * t.element_size() for t in tensors)
    export_bytes = path.stat().st_size
    sparse_count = sum(1 for info in layout.values() if info["encoding"] == "sparse")
    return {
        "path": str(path),
        "export_bytes": export_bytes,
        "dense_bytes": dense_bytes,
        "dense_fp32_bytes": sum(t.numel() * 4 for t in tensors),
        "ratio": export_bytes / dense_bytes if dense_bytes else float("nan"),
        "num_tensors": len(layout),
        "sparse_tensors": sparse_count,
        "dense_tensors": len(layout) - sparse_count,
    }


def read_metadata(path: str | os.PathLike) -> Dict[str, str]:
    """The safetensors metadata of a sparse export; CheckpointError if it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"sparse export not found: '{path}' (check the path)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file (truncated, corrupt or another format): {reason}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is a safetensors file but not a sparse export (no format={FORMAT} in its metadata)"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' is sparse export version {metadata.get('format_version')!r}; "
            f"this code reads version {FORMAT_VERSION}"
        )
    return metadata


def load_sparse(path: str | os.PathLike) -> Dict[str, Tensor]:
    """The dense state_dict stored by :func:`export_sparse`, bit-identical, in the original key order."""
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    try:
        layout = json.loads(metadata["tensors"])
        stored = load_file(str(path))
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"'{path}' is a damaged sparse export: {reason}") from None
    return {name: _decode(name, info, stored, path) for name, info in layout.items()}


def export_checkpoint(ckpt_path: str | os.PathLike, out_path: str | os.PathLike) -> Dict[str, Any]:
    """Export the model weights of a checkpoint (harness, bare state_dict or the authors' format).

    Returns :func:`export_sparse`'s sizes plus ``checkpoint`` and ``checkpoint_bytes`` (the input file).
    """
    obj = load_checkpoint(ckpt_path)
    state_dict = extract_state_dict(obj, ckpt_path)
    extra = {"source": Path(ckpt_path).name}
    if isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping):
        extra["config"] = json.dumps(obj["config"])
    if Path(out_path).resolve() == Path(ckpt_path).resolve():
        raise UserError(f"the export would overwrite its input '{ckpt_path}'; pick another output path")
    out = export_sparse(state_dict, out_path, extra)
    out["checkpoint"] = str(ckpt_path)
    out["checkpoint_bytes"] = Path(ckpt_path).stat().st_size
    return out


def describe_export(report: Mapping[str, Any]) -> str:
    """One line for people: where the export went and how big it is against the dense weights."""
    line = (
        f"exported {report['num_tensors']} tensors ({report['sparse_tensors']} sparse) to {report['path']}: "
        f"{report['export_bytes']:,} bytes = {100 * report['ratio']:.1f}% "
        f"of the {report['dense_bytes']:,} bytes of dense weights"
    )
    if report.get("checkpoint_bytes"):
        share = 100 * report["export_bytes"] / report["checkpoint_bytes"]
        line += f" ({share:.1f}% of the checkpoint's {report['checkpoint_bytes']:,})"
    return line
