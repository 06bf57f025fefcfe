"""gRDA's fused CPU kernel (grda_cpu.c): built once per machine with the system C compiler, called through ctypes.

The kernel makes one pass over memory with streaming stores for the weights (why: see grda_cpu.c), which brings a
gRDA step to ~1.3x a plain SGD step on large models where the best torch.compile kernel is ~1.6x. Nothing here is
needed for correctness: where the kernel cannot be built or a tensor does not qualify, GRDA uses its eager path.

The shared library is cached in ``$GRDA_KERNEL_CACHE`` (default ``~/.cache/grda``), named by a hash of the source,
the compiler command and the architecture, and written atomically, so that concurrent processes (DDP ranks) may
build it at the same time. Set ``CC`` to choose the compiler.
"""

from __future__ import annotations

import array
import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("grda_cpu.c")
FLAGS = ["-O3", "-shared", "-fPIC"]
THREAD_FLAGS = ["-fopenmp"]  # dropped if the compiler has no OpenMP: the kernel then runs on one thread
# Streaming stores bypass the cache: worth it only when the weights would not stay in cache anyway.
STREAMING_MIN_BYTES = 32 * 2**20
POINTER_TYPECODE = "Q" if ctypes.sizeof(ctypes.c_void_p) == 8 else "I"  # array.array of addresses
# Below this many elements per thread, starting a thread costs more than it saves.
MIN_NUMEL_PER_THREAD = 2**18

_library: Optional[ctypes.CDLL] = None
_build_error: Optional[str] = None


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grda"
    return Path(os.environ.get("GRDA_KERNEL_CACHE", default))


def temp_cache_dir() -> Path:
    """Where the library goes when ``cache_dir()`` cannot be written."""
    return Path(tempfile.gettempdir()) / f"grda-{os.getuid()}"


def compiler() -> List[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def library_path(
    directory: Optional[Path] = None,
    source: Path = SOURCE,
    flags: Sequence[str] = FLAGS,
    thread_flags: Sequence[str] = THREAD_FLAGS,
) -> Path:
    """Where the library built from ``source`` with these flags is cached (named by a hash of source and recipe)."""
    recipe = " ".join([*compiler(), *flags, *thread_flags, platform.machine()]).encode()
    key = hashlib.sha256(source.read_bytes() + recipe)
    return (directory or cache_dir()) / f"{source.stem}_{platform.machine()}_{key.hexdigest()[:16]}.so"


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


def build_library(
    target: Path,
    rebuild: bool = False,
    source: Path = SOURCE,
    flags: Sequence[str] = FLAGS,
    thread_flags: Sequence[str] = THREAD_FLAGS,
) -> Path:
    """Compile ``source`` to ``target`` (to the temp cache if target's folder is read-only); return where it is.
    ``thread_flags`` are dropped when the compiler refuses them (no OpenMP: the kernel runs on one thread).

    Public for other C kernels (the harness's sparse runtime builds its own with it, into the same cache and with the
    same fallbacks): ``build_library(library_path(None, source, flags, thread_flags), False, source, flags, ...)``."""
    tmp = _temp_file_beside(target)
    target = Path(tmp).parent / target.name
    if target.exists() and not rebuild:  # built before in the temp cache
        Path(tmp).unlink()
        return target
    try:
        for extra in (thread_flags, []):
            cmd = [*compiler(), *flags, *extra, str(source), "-o", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load() -> Optional[ctypes.CDLL]:
    """The kernel library, built on first use; None (with a warning, once) if it cannot be built or loaded."""
    global _library, _build_error
    if _library is not None or _build_error is not None:
        return _library
    try:
        path = library_path()
        if not path.exists():
            path = build_library(path)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # a damaged cache file: build it again
            lib = ctypes.CDLL(str(build_library(path, rebuild=True)))
    except Exception as e:  # no compiler, a read-only home, an unloadable file...
        _build_error = f"{type(e).__name__}: {e}"
        warnings.warn(f"GRDA: the fused CPU kernel is unavailable ({_build_error}); using impl='foreach'")
        return None
    lib.grda_update_f32.restype = None
    lib.grda_update_f32.argtypes = [
        ctypes.c_int64,
        *[ctypes.POINTER(ctypes.c_void_p)] * 2,
        ctypes.c_void_p,  # the gradients' addresses: an array.array, bound anew each step
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_float,
        ctypes.c_float,
        ctypes.c_int,
        ctypes.c_int,
    ]
    _library = lib
    return lib


def available() -> bool:
    return load() is not None


def supports(p: Tensor, g: Tensor, a: Tensor) -> bool:
    """The kernel walks the three tensors' memory as flat arrays of ``p.numel()`` elements: all three float32 on the
    CPU, of one shape (an accumulator of another shape, e.g. from a mismatched state dict, goes through foreach,
    which raises), in one dense layout. bf16/fp16 parameters go through foreach."""
    if not (p.is_cpu and g.is_cpu and a.is_cpu):
        return False
    if p.dtype != torch.float32 or g.dtype != torch.float32 or a.dtype != torch.float32:
        return False
    if p.shape != g.shape or p.shape != a.shape:
        return False
    return same_dense_layout(p, g, a)


def same_dense_layout(p: Tensor, g: Tensor, a: Tensor) -> bool:
    """The three tensors lie in memory alike and densely, so a kernel may walk them as flat arrays."""
    if p.is_contiguous() and g.is_contiguous() and a.is_contiguous():  # the common case, checked cheaply
        return True
    return p.stride() == g.stride() == a.stride() and p.is_contiguous(memory_format=torch.channels_last)


class Launch:
    """``bind_grads(grads)`` then ``launch(lr, tau)``: the update of a fixed set of tensors (each passing ``supports``).

    Parameters and accumulators are fixed at their current addresses; gradients are bound anew for every step, since
    on the CPU they come back at new addresses each step.
    """

    def __init__(self, params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor]) -> None:
        if not all(map(supports, params, grads, accumulators)):  # the kernel would read or write past a tensor
            raise ValueError(
                "grda_cpu.c takes float32 CPU tensors, each with its gradient and accumulator of one "
                "shape and one dense layout (see supports())"
            )
        self._lib = load()
        count = len(params)
        numel = [p.numel() for p in params]
        total = sum(numel)
        pointers = ctypes.c_void_p * count
        self._w = pointers(*[p.data_ptr() for p in params])
        self._a = pointers(*[a.data_ptr() for a in accumulators])
        self._numel = (ctypes.c_int64 * count)(*numel)
        self._count = count
        self._streaming = int(4 * total >= STREAMING_MIN_BYTES)
        self._threads = max(1, min(torch.get_num_threads(), total // MIN_NUMEL_PER_THREAD))
        self._g = None
        self.bind_grads(grads)

    def bind_grads(self, grads: List[Tensor]) -> bool:
        """Take these gradients (same sizes and layouts as the ones given before) for the next launch."""
        self._g = array.array(POINTER_TYPECODE, map(Tensor.data_ptr, grads))
        return True

    def __call__(self, lr: float, tau: float) -> None:
        self._lib.grda_update_f32(
            self._count,
            self._w,
            self._a,
            self._g.buffer_info()[0],
            self._numel,
            lr,
            tau,
            self._streaming,
            self._threads,
        )


def update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """a <- a - lr * g; w <- softshrink(a, tau) for tensors that pass ``supports``, in one call."""
    Launch(params, grads, accumulators)(lr, tau)
