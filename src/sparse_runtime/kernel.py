"""The sparse-weight kernel (spconv_cpu.c): built once per machine with the system C compiler, called through ctypes.

Cached beside gRDA's optimizer kernel in ``$GRDA_KERNEL_CACHE`` (default ``~/.cache/grda``), named by a hash of
the source, the compiler command and the architecture, written atomically. Nothing here is needed for
correctness: without a compiler the runtime measures only the candidates torch has (dense, CSR).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from grda import cpu_kernel  # its build-and-cache helpers: the same cache folder and fallbacks as gRDA's kernel

SOURCE = Path(__file__).with_name("spconv_cpu.c")
FLAGS = ["-O3", "-shared", "-fPIC"]
THREAD_FLAGS = ["-fopenmp"]  # dropped if the compiler has no OpenMP: the kernel then runs on one thread

_library: Optional[ctypes.CDLL] = None
_build_error: Optional[str] = None


def library_path(directory: Optional[Path] = None) -> Path:
    return cpu_kernel.library_path(directory, SOURCE, FLAGS, THREAD_FLAGS)


def _build(target: Path, rebuild: bool = False) -> Path:
    return cpu_kernel.build_library(target, rebuild, SOURCE, FLAGS, THREAD_FLAGS)


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
        warnings.warn(
            f"sparse runtime: the direct sparse kernel is unavailable ({_build_error}); "
            "only dense and torch CSR candidates are measured"
        )
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.spconv_f32.restype = ctypes.c_int
    lib.spconv_f32.argtypes = [
        i64,
        i64,
        i64,
        ptr,
        ptr,
        ptr,
        ptr,
        ptr,
        i64,
        ptr,
        i64,
        i64,
        i64,
        i64,
        i64,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.spconv_uses_avx2.restype = ctypes.c_int
    lib.maxpool_f32.restype = ctypes.c_int
    lib.maxpool_f32.argtypes = [i64] * 9 + [ptr, ptr, i64, i64, ctypes.c_int]
    _library = lib
    return lib


def available() -> bool:
    return load() is not None


def uses_avx2() -> bool:
    lib = load()
    return bool(lib is not None and lib.spconv_uses_avx2())


def bound_spconv(
    N: int,
    O: int,
    L: int,
    rowptr: Tensor,
    off: Tensor,
    val: Tensor,
    bias: Optional[Tensor],
    xs: int,
    ys: int,
    ocs: int,
    ps: int,
    G: int,
    Q: int,
    relu: bool,
    threads: int,
):
    """The product described in spconv_cpu.c (tensors contiguous, on the CPU, float32/int32) with everything but the
    input buffer and the output bound: ``call(x, y)``. The returned
    function keeps the operands alive."""
    lib = _library if _library is not None else load()
    fn = lib.spconv_f32
    head = (N, O, L, rowptr.data_ptr(), off.data_ptr(), val.data_ptr(), None if bias is None else bias.data_ptr())
    tail = (ys, ocs, ps, G, Q, int(relu), int(threads))
    operands = (rowptr, off, val, bias)

    def call(x: Tensor, y: Tensor, _keep=operands) -> None:
        fn(*head, x.data_ptr(), xs, y.data_ptr(), *tail)

    return call


MAXPOOL_MAX_WIDTH = 4096  # the C routine's row buffer


def maxpool(x: Tensor, kernel_size, stride, padding) -> Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding)`` (dilation 1, floor mode) of a float32 NCHW ``x``."""
    return maxpool_runner(tuple(x.shape), kernel_size, stride, padding, torch.get_num_threads())(x)


def maxpool_runner(shape, kernel_size, stride, padding, threads: int):
    """:func:`maxpool` for contiguous-or-not float32 inputs of ``shape``, with the sizes bound: ``run(x) -> y``."""
    lib = _library if _library is not None else load()
    fn = lib.maxpool_f32
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = shape
    if min(kh, kw, sh, sw) < 1 or not (0 <= ph <= kh // 2 and 0 <= pw <= kw // 2):
        raise ValueError(
            f"maxpool: kernel {kernel_size}, stride {stride}, padding {padding}: kernel and stride must "
            "be >= 1 and padding at most half the kernel (as in F.max_pool2d)"
        )
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"maxpool: input {tuple(shape)} is smaller than the kernel {kernel_size}")
    if w > MAXPOOL_MAX_WIDTH:
        raise ValueError(f"maxpool: width {w} > {MAXPOOL_MAX_WIDTH}")
    sizes = (n * c, h, w, kh, kw, sh, sw, ph, pw)
    out_shape = (n, c, ho, wo)

    def run(x: Tensor) -> Tensor:
        x = x.contiguous()
        y = torch.empty(out_shape, dtype=torch.float32)
        if fn(*sizes, x.data_ptr(), y.data_ptr(), ho, wo, threads) != 0:
            raise RuntimeError(f"maxpool_f32 refused input {tuple(x.shape)}")
        return y

    return run
