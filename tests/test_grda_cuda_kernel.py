"""The fused GPU kernel (src/optim/grda/cuda_kernel.py, Triton) against the literal formula.

Without a GPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set before Triton is imported, so in a
child process); on a machine with CUDA the tests below also run it on the GPU through the optimizer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from grda import GRDA, cuda_kernel
from grda import optimizer as grda_module

REPO = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where one is lent)")
needs_triton = pytest.mark.skipif(not cuda_kernel.triton_installed(), reason="this PyTorch build has no Triton")

INTERPRETED = textwrap.dedent(
    """
    import torch
    from grda import cuda_kernel

    torch.manual_seed(0)
    sizes = [1, 7, 4095, 4096, 4097, 3 * 4096 + 5]  # around the block size: masks and several chunks per tensor
    for dtype in (torch.float32, torch.bfloat16):
        w = [torch.randn(n).to(dtype) for n in sizes]
        a = [x.clone() for x in w]
        w_ref, a_ref = [x.clone() for x in w], [x.clone() for x in w]
        launch = cuda_kernel.Launch(w, w, a)
        kept = []
        for step in range(1, 4):
            g = [torch.randn(n).to(dtype) for n in sizes]  # new gradients at new addresses: their table is re-sent
            kept.append(g)
            assert launch.bind_grads(g)
            launch(0.1, 0.2 * step)
            for x, y, d in zip(w_ref, a_ref, g):
                y.add_(d, alpha=-0.1)
                x.copy_(torch.sign(y) * torch.clamp(y.abs() - 0.2 * step, min=0) + 0.0)
        # bf16: a - lr*g may round the other way at a tie; that ulp of the accumulator (|a| < 8) shows in w
        atol, flips = (1e-6, 2) if dtype == torch.float32 else (2 * 2.0**-5, sum(sizes) // 100)
        for x, y in zip(w, w_ref):
            torch.testing.assert_close(x, y, rtol=0, atol=atol)
        zeros_ref = sum(int((y == 0).sum()) for y in w_ref)
        zeros = sum(int((x == 0).sum()) for x in w)
        assert zeros_ref > 1000 and abs(zeros - zeros_ref) <= flips, (zeros, zeros_ref)
        assert not any(bool((torch.signbit(x) & (x == 0)).any()) for x in w), "a pruned weight is +0.0"
        assert not launch.bind_grads([torch.randn(n + 1).to(dtype)[1:] for n in sizes])  # misaligned: refused
    print("interpreted kernel ok")
    """
)


@needs_triton
def test_kernel_in_triton_interpreter_matches_literal_formula():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", INTERPRETED], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreted kernel ok" in done.stdout


def test_supports_only_cuda_tensors_of_one_dtype_and_layout():
    x = torch.randn(4, 3, 2, 2)
    assert not cuda_kernel.supports(x, x, x)  # CPU tensors go elsewhere


@needs_cuda
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cuda_path_matches_reference_and_is_auto(dtype):
    torch.manual_seed(0)
    shapes = [(64, 32, 3, 3), (64,), (10, 5000), (3,)]
    base = [torch.randn(s, device="cuda").to(dtype) for s in shapes]
    runs = {}
    for impl in ("auto", "fused", "foreach", "reference"):
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = GRDA(params, lr=0.1, c=0.3, mu=0.51, impl=impl)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(8):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, device="cuda").to(dtype)
            opt.step()
        runs[impl] = params
    assert grda_module._resolve_impl("auto", runs["auto"]) == "fused"
    atol, flips = (1e-6, 2) if dtype == torch.float32 else (2 * 2.0**-5, 100)  # bf16: see the interpreter test
    for impl in ("auto", "fused", "foreach"):
        for p, q in zip(runs[impl], runs["reference"]):
            torch.testing.assert_close(p, q, rtol=0, atol=atol)
            assert abs(int((p == 0).sum()) - int((q == 0).sum())) <= flips
    assert sum(int((q == 0).sum()) for q in runs["reference"]) > 100


@needs_cuda
@needs_triton
def test_fused_cuda_path_follows_new_gradient_addresses():
    """Gradients freed and reallocated between steps (zero_grad's default) must be read at their new address."""
    p = torch.nn.Parameter(torch.randn(10000, device="cuda"))
    q = torch.nn.Parameter(p.detach().clone())
    opt, ref = GRDA([p], lr=0.1, c=0.1, mu=0.6, impl="fused"), GRDA([q], lr=0.1, c=0.1, mu=0.6, impl="reference")
    keep = []
    for step in range(5):
        g = torch.randn(10000, device="cuda")
        keep.append(torch.empty(12345, device="cuda"))  # shift the allocator so addresses change
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_importing_the_optimizer_does_not_import_triton():
    """Triton costs ~75 MB of memory: the optimizer imports it only to update CUDA tensors (torchvision, which the
    harness imports, brings it in anyway)."""
    code = "import sys, grda; grda.GRDA; assert 'triton' not in sys.modules, 'triton imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
