"""gRDA's fused GPU kernel: one Triton launch updates every tensor of a parameter set.

Per element, like the CPU kernel (grda_cpu.c):  a <- fma(g, -lr, a);  w <- softshrink(a, tau)  (exact zeros).
The update is memory-bound and a GPU moves ResNet-50's 100 MB in a few tens of microseconds, so what costs is
launching: one kernel per tensor (161 for ResNet-50) takes several times a plain SGD step. Here one launch covers all
tensors: a table maps each program to (tensor, offset), and the tensors' addresses are read from a second table.
The tables are built by ``prepare`` and reused by GRDA while the tensors' addresses stay the same (gradients freed
by ``zero_grad(set_to_none=True)`` usually come back at the same addresses from PyTorch's caching allocator).

Nothing here is needed for correctness: without Triton GRDA uses its other paths.
"""

from __future__ import annotations

from typing import Callable, List

import torch
from torch import Tensor

try:  # Triton ships with PyTorch's CUDA builds; other builds do without this path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

BLOCK = 4096  # elements per program
NUM_WARPS = 8
DTYPES = (torch.float32, torch.bfloat16, torch.float16)

if triton is not None:

    @triton.jit
    def _update_block(w, a, g, offsets, inside, lr, tau, DTYPE: tl.constexpr):
        g_value = tl.load(g + offsets, mask=inside).to(tl.float32)
        x = tl.fma(g_value, -lr, tl.load(a + offsets, mask=inside).to(tl.float32))
        x = x.to(DTYPE)  # the accumulator is stored in the parameter's dtype; threshold what is stored
        tl.store(a + offsets, x, mask=inside)
        x = x.to(tl.float32)
        shrunk = tl.where(x > tau, x - tau, tl.where(x < -tau, x + tau, x * 0.0))
        tl.store(w + offsets, shrunk.to(DTYPE), mask=inside)

    @triton.jit
    def _grda_multi_tensor_kernel(
        w_addresses, a_addresses, g_addresses, chunk_tensor, chunk_start, numels, lr, tau,
        BLOCK: tl.constexpr, DTYPE: tl.constexpr,
    ):
        chunk = tl.program_id(0)
        t = tl.load(chunk_tensor + chunk)
        start = tl.load(chunk_start + chunk)
        numel = tl.load(numels + t)
        offsets = tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK), BLOCK), BLOCK)
        # addresses are 16-byte aligned (``supports`` checks it), so whole blocks load and store 16 bytes at a time
        w = tl.multiple_of(tl.load(w_addresses + t).to(tl.pointer_type(DTYPE)), 16)
        a = tl.multiple_of(tl.load(a_addresses + t).to(tl.pointer_type(DTYPE)), 16)
        g = tl.multiple_of(tl.load(g_addresses + t).to(tl.pointer_type(DTYPE)), 16)
        if start + BLOCK <= numel:
            _update_block(w, a, g, offsets, None, lr, tau, DTYPE)
        else:  # a tensor's last, partial block
            _update_block(w, a, g, offsets, offsets < numel, lr, tau, DTYPE)


_available: bool | None = None


def available() -> bool:
    global _available
    if _available is None:  # asked on every step; whether CUDA is there does not change within a process
        _available = triton is not None and torch.cuda.is_available()
    return _available


def supports(p: Tensor, g: Tensor, a: Tensor) -> bool:
    """One dtype (fp32/bf16/fp16) for the three tensors on a CUDA device, one dense layout, 16-byte aligned."""
    if not p.is_cuda or p.dtype not in DTYPES or g.dtype != p.dtype or a.dtype != p.dtype:
        return False
    if any(t.data_ptr() % 16 for t in (p, g, a)):  # the kernel loads and stores 16 bytes at a time
        return False
    if p.is_contiguous() and g.is_contiguous() and a.is_contiguous():
        return True
    return p.stride() == g.stride() == a.stride() and p.is_contiguous(memory_format=torch.channels_last)


def prepare(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor]) -> Callable[[float, float], None]:
    """A call ``launch(lr, tau)`` that updates these tensors (one device and dtype, each passing ``supports``) at their
    current addresses with one kernel launch."""
    device = params[0].device
    numels = [p.numel() for p in params]
    counts = torch.tensor([-(-n // BLOCK) for n in numels])
    tensor_of_chunk = torch.repeat_interleave(torch.arange(len(numels)), counts)
    first_chunk = torch.cumsum(counts, 0) - counts
    start = (torch.arange(int(counts.sum())) - first_chunk[tensor_of_chunk]) * BLOCK
    addresses = [torch.tensor([t.data_ptr() for t in ts], dtype=torch.int64) for ts in (params, accumulators, grads)]
    tables = [x.to(device) for x in (*addresses, tensor_of_chunk, start, torch.tensor(numels, dtype=torch.int64))]
    kernel = _grda_multi_tensor_kernel[(len(tensor_of_chunk),)]
    dtype = _TL_DTYPES[params[0].dtype]

    def launch(lr: float, tau: float) -> None:
        if device.type != "cuda":  # Triton's interpreter (TRITON_INTERPRET=1): how the tests run it without a GPU
            return kernel(*tables, lr, tau, BLOCK=BLOCK, DTYPE=dtype)
        with torch.cuda.device(device):
            kernel(*tables, lr, tau, BLOCK=BLOCK, DTYPE=dtype, num_warps=NUM_WARPS)

    return launch


def update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """a <- a - lr * g; w <- softshrink(a, tau) for tensors that pass ``supports`` (one device and dtype)."""
    prepare(params, grads, accumulators)(lr, tau)


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16} if triton else {}
