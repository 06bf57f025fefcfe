"""gRDA's fused GPU kernel: one Triton launch updates every tensor of a parameter set.

Per element, like the CPU kernel (grda_cpu.c):  a <- fma(g, -lr, a);  w <- softshrink(a, tau)  (exact zeros, +0.0),
computed in float32; the accumulator is stored in its dtype (float32 for bf16/fp16 parameters by default, else the
parameter's), and the weight is the soft threshold of what is stored, rounded once to the parameter's dtype.
The update is memory-bound and a GPU moves ResNet-50's 100 MB in a few tens of microseconds, so what costs is
launching: one kernel per tensor (161 for ResNet-50) takes several times a plain SGD step. Here one launch covers all
tensors: a table maps each program to (tensor, offset), and the tensors' addresses are read from a second table.
The tables are built once per set of parameters and reused by GRDA while the tensors' addresses stay the same
(gradients freed by ``zero_grad(set_to_none=True)`` usually come back at the same addresses from PyTorch's caching
allocator; when they do not, only their table is uploaded again).

Nothing here is needed for correctness: without Triton GRDA uses its other paths.
"""

from __future__ import annotations

import importlib.util
from typing import List

import torch
from torch import Tensor

from grda.cpu_kernel import same_dense_layout

BLOCK = 4096  # elements per program
NUM_WARPS = 8
DTYPES = (torch.float32, torch.bfloat16, torch.float16)

_available: bool | None = None


def triton_installed() -> bool:
    """Triton ships with PyTorch's CUDA builds; other builds do without this path."""
    return importlib.util.find_spec("triton") is not None


def available() -> bool:
    global _available
    if _available is None:  # asked on every step; whether CUDA is there does not change within a process
        _available = torch.cuda.is_available() and triton_installed()
    return _available


def supports(p: Tensor, g: Tensor, a: Tensor) -> bool:
    """Tensors on a CUDA device that the kernel takes (``takes``)."""
    return p.is_cuda and takes(p, g, a)


def takes(p: Tensor, g: Tensor, a: Tensor) -> bool:
    """What the kernel needs of the three tensors, wherever they are (``supports`` adds: on a CUDA device; the tests
    hand CPU tensors to Triton's interpreter through this). Parameter and gradient of one dtype (fp32/bf16/fp16), the
    accumulator of that dtype or float32; one device, one shape, one dense layout, 16-byte aligned."""
    if p.dtype not in DTYPES or g.dtype != p.dtype or (a.dtype != p.dtype and a.dtype != torch.float32):
        return False
    if p.device != g.device or p.device != a.device or p.shape != g.shape or p.shape != a.shape:
        return False
    if any(t.data_ptr() % 16 for t in (p, g, a)):  # the kernel loads and stores 16 bytes at a time
        return False
    return same_dense_layout(p, g, a)


class Launch:
    """``bind_grads(grads)`` then ``launch(lr, tau)``: one kernel launch that updates a fixed set of tensors (one
    device, one parameter dtype and one accumulator dtype, each passing ``takes``).

    Parameters and accumulators are fixed at their current addresses. The gradients' address table is uploaded again
    only when their addresses change.
    """

    def __init__(self, params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor]) -> None:
        if not all(map(takes, params, grads, accumulators)):  # the kernel would read or write past a tensor
            raise ValueError(
                "the Triton kernel takes tensors each with its gradient and accumulator of one device, "
                "shape and dense layout (see takes())"
            )
        if len({(p.device, p.dtype, a.dtype) for p, a in zip(params, accumulators)}) != 1:
            raise ValueError("one launch updates tensors of one device, one dtype and one accumulator dtype")
        self.device = params[0].device
        numels = [p.numel() for p in params]
        counts = torch.tensor([-(-n // BLOCK) for n in numels])
        tensor_of_chunk = torch.repeat_interleave(torch.arange(len(numels)), counts)
        first_chunk = torch.cumsum(counts, 0) - counts
        start = (torch.arange(int(counts.sum())) - first_chunk[tensor_of_chunk]) * BLOCK
        self._grad_addresses = tuple(map(Tensor.data_ptr, grads))
        self._tables = [
            self._addresses(tuple(map(Tensor.data_ptr, params))),
            self._addresses(tuple(map(Tensor.data_ptr, accumulators))),
            self._addresses(self._grad_addresses),
        ] + [x.to(self.device) for x in (tensor_of_chunk, start, torch.tensor(numels, dtype=torch.int64))]
        from grda import _triton  # here, not at the top: importing Triton costs memory and time

        self._kernel = _triton.grda_multi_tensor_kernel[(len(tensor_of_chunk),)]
        dtypes = _triton.TL_DTYPES
        self._dtypes = {"DTYPE": dtypes[params[0].dtype], "ACC_DTYPE": dtypes[accumulators[0].dtype]}

    def _addresses(self, addresses: tuple) -> Tensor:
        return torch.tensor(addresses, dtype=torch.int64).to(self.device)

    def bind_grads(self, grads: List[Tensor]) -> bool:
        """Take these gradients (same sizes and layouts as before) for the next launch; False if they are not 16-byte
        aligned, which the kernel needs."""
        addresses = tuple(map(Tensor.data_ptr, grads))
        if addresses != self._grad_addresses:
            if any(address % 16 for address in addresses):
                return False
            self._tables[2] = self._addresses(addresses)
            self._grad_addresses = addresses
        return True

    def __call__(self, lr: float, tau: float) -> None:
        if self.device.type != "cuda":  # Triton's interpreter (TRITON_INTERPRET=1): how the tests run it without a GPU
            return self._kernel(*self._tables, lr, tau, BLOCK=BLOCK, **self._dtypes)
        if torch.cuda.current_device() != self.device.index:  # switch only when needed: switching costs ~8 us
            with torch.cuda.device(self.device):
                return self(lr, tau)
        self._kernel(*self._tables, lr, tau, BLOCK=BLOCK, num_warps=NUM_WARPS, **self._dtypes)


def update(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float) -> None:
    """a <- a - lr * g; w <- softshrink(a, tau) for tensors that pass ``supports`` (one device and dtype)."""
    Launch(params, grads, accumulators)(lr, tau)
