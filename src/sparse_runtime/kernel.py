"""The sparse-weight kernel (spconv_cpu.c): built once per machine with the system C compiler, called through ctypes.

Cached beside gRDA's optimizer kernel in ``$GRDA_KERNEL_CACHE`` (default ``~/.cache/grda``), named by a hash of
the source, the compiler command and the architecture, written atomically. Nothing here is needed for
correctness: without a compiler the runtime measures only the candidates torch has (dense, CSR).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from grda.cpu_kernel import cache_dir, compiler, temp_cache_dir

SOURCE = Path(__file__).with_name("spconv_cpu.c")
FLAGS = ["-O3", "-shared", "-fPIC"]
THREAD_FLAGS = ["-fopenmp"]  # dropped if the compiler has no OpenMP: the kernel then runs on one thread

_library: Optional[ctypes.CDLL] = None
_build_error: Optional[str] = None


def library_path(directory: Optional[Path] = None) -> Path:
    recipe = " ".join([*compiler(), *FLAGS, *THREAD_FLAGS, platform.machine()]).encode()
    key = hashlib.sha256(SOURCE.read_bytes() + recipe)
    return (directory or cache_dir()) / f"spconv_cpu_{platform.machine()}_{key.hexdigest()[:16]}.so"


def _temp_file_beside(target: Path) -> str:
    """A temp file in target's folder, or in a per-user temp folder if that one cannot be written."""
    for directory in (target.parent, temp_cache_dir()):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
            os.close(fd)
            return tmp
        except OSError:
            continue
    raise OSError(f"cannot write the kernel cache {target.parent} (set GRDA_KERNEL_CACHE to a writable folder)")


def _build(target: Path, rebuild: bool = False) -> Path:
    tmp = _temp_file_beside(target)
    target = Path(tmp).parent / target.name
    if target.exists() and not rebuild:
        Path(tmp).unlink()
        return target
    try:
        for extra in (THREAD_FLAGS, []):
            cmd = [*compiler(), *FLAGS, *extra, str(SOURCE), "-o", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load() -> Optional[ctypes.CDLL]:
    """The kernel library, built on first use; None (with a warning, once) if it cannot be built or loaded."""
    global _library, _build_error
    if _library is not None or _build_error is not None:
        return _library
    if os.environ.get("GRDA_SPARSE_KERNEL", "") == "off":
        _build_error = "disabled by GRDA_SPARSE_KERNEL=off"
        return None
    try:
        path = library_path()
        if not path.exists():
            path = _build(path)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            lib = ctypes.CDLL(str(_build(path, rebuild=True)))
    except Exception as e:  # no compiler, a read-only home, an unloadable file...
        _build_error = f"{type(e).__name__}: {e}"
        warnings.warn(f"sparse runtime: the direct sparse kernel is unavailable ({_build_error}); "
                      "only dense and torch CSR candidates are measured")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.spconv_f32.restype = ctypes.c_int
    lib.spconv_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ptr, i64, ptr, i64, i64, i64, i64, i64,
                               ctypes.c_int, ctypes.c_int]
    lib.spconv_uses_avx2.restype = ctypes.c_int
    _library = lib
    return lib


def available() -> bool:
    return load() is not None


def uses_avx2() -> bool:
    lib = load()
    return bool(lib is not None and lib.spconv_uses_avx2())


def spconv(N: int, O: int, L: int, rowptr: Tensor, off: Tensor, val: Tensor, bias: Optional[Tensor], x: Tensor,
           xs: int, y: Tensor, ys: int, ocs: int, ps: int, G: int, Q: int, relu: bool) -> None:
    """``y`` <- the product described in spconv_cpu.c (all tensors contiguous, on the CPU, float32/int32)."""
    lib = _library if _library is not None else load()
    lib.spconv_f32(N, O, L, rowptr.data_ptr(), off.data_ptr(), val.data_ptr(),
                   None if bias is None else bias.data_ptr(), x.data_ptr(), xs, y.data_ptr(), ys, ocs, ps, G, Q,
                   int(relu), torch.get_num_threads())
