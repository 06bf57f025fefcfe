"""The Triton kernel behind cuda_kernel.py, in a module of its own so that Triton (≈75 MB of memory) is imported
only by processes that update CUDA tensors."""

import torch
import triton
import triton.language as tl

TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def update_block(w, a, g, offsets, inside, lr, tau, DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr):
    g_value = tl.load(g + offsets, mask=inside).to(tl.float32)
    x = tl.fma(g_value, -lr, tl.load(a + offsets, mask=inside).to(tl.float32))
    x = x.to(ACC_DTYPE)  # stored in the accumulator's dtype (float32, or the parameter's); threshold what is stored
    tl.store(a + offsets, x, mask=inside)
    x = x.to(tl.float32)
    # zeros are +0.0 (x * 0.0 is -0.0 for negative x; adding +0.0 clears the sign), NaN stays NaN
    shrunk = tl.where(x > tau, x - tau, tl.where(x < -tau, x + tau, x * 0.0 + 0.0))
    tl.store(w + offsets, shrunk.to(DTYPE), mask=inside)


@triton.jit
def grda_multi_tensor_kernel(
    w_addresses,
    a_addresses,
    g_addresses,
    chunk_tensor,
    chunk_start,
    numels,
    lr,
    tau,
    BLOCK: tl.constexpr,
    DTYPE: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    chunk = tl.program_id(0)
    t = tl.load(chunk_tensor + chunk)
    start = tl.load(chunk_start + chunk)
    numel = tl.load(numels + t)
    offsets = tl.max_contiguous(tl.multiple_of(start + tl.arange(0, BLOCK), BLOCK), BLOCK)
    # addresses are 16-byte aligned (``supports`` checks it), so whole blocks load and store 16 bytes at a time
    w = tl.multiple_of(tl.load(w_addresses + t).to(tl.pointer_type(DTYPE)), 16)
    a = tl.multiple_of(tl.load(a_addresses + t).to(tl.pointer_type(ACC_DTYPE)), 16)
    g = tl.multiple_of(tl.load(g_addresses + t).to(tl.pointer_type(DTYPE)), 16)
    if start + BLOCK <= numel:
        update_block(w, a, g, offsets, None, lr, tau, DTYPE, ACC_DTYPE)
    else:  # a tensor's last, partial block
        update_block(w, a, g, offsets, offsets < numel, lr, tau, DTYPE, ACC_DTYPE)
