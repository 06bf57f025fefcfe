"""The fused GPU kernel (src/optim/grda/cuda_kernel.py, Triton) against the literal formula.

Without a GPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set before Triton is imported, so in a
child process): the launch helper on its own, and GRDA(impl="fused") driven into it end to end. On a machine with CUDA
the tests below also run it on the GPU through the optimizer. Every one checks that pruned weights are +0.0.
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

# (parameter dtype, accumulator dtype) pairs the kernel takes; tolerances: see the interpreter test
CASES = (
    "[(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32), "
    "(torch.float16, torch.float16), (torch.float16, torch.float32)]"
)

INTERPRETED = textwrap.dedent(
    """
    import torch
    from grda import cuda_kernel

    def literal_step(w, a, g, lr, tau):
        # the formula in the accumulator's dtype; the weight is its soft threshold in float32, rounded once
        a.add_(g, alpha=-lr)
        x = a.float()
        w.copy_(torch.sign(x) * torch.clamp(x.abs() - tau, min=0) + 0.0)

    torch.manual_seed(0)
    sizes = [1, 7, 4095, 4096, 4097, 3 * 4096 + 5]  # around the block size: masks and several chunks per tensor
    for dtype, acc_dtype in CASES:
        w = [torch.randn(n).to(dtype) for n in sizes]
        a = [x.to(acc_dtype, copy=True) for x in w]
        w_ref, a_ref = [x.clone() for x in w], [x.clone() for x in a]
        launch = cuda_kernel.Launch(w, w, a)
        kept = []
        for step in range(1, 4):
            g = [torch.randn(n).to(dtype) for n in sizes]  # new gradients at new addresses: their table is re-sent
            kept.append(g)
            assert launch.bind_grads(g)
            launch(0.1, 0.2 * step)
            for x, y, d in zip(w_ref, a_ref, g):
                literal_step(x, y, d, 0.1, 0.2 * step)
        # The interpreter emulates fma as a multiply and an add (an fp32 ulp), and rounds fp32 to bf16 towards zero
        # (a bf16 ulp; fp16 rounds to nearest): within one ulp of the weight's dtype at |w| < 8 (two where the
        # accumulator is bf16/fp16 too: an ulp of it may show in w). Zeros flip only with a low-precision accumulator.
        ulp = {torch.float32: 1e-6, torch.bfloat16: 2.0**-5, torch.float16: 2.0**-8}
        w_atol = ulp[dtype] * (1 if acc_dtype == torch.float32 else 2)
        flips = 2 if acc_dtype == torch.float32 else sum(sizes) // 100
        for x, y, b, b_ref in zip(w, w_ref, a, a_ref):
            assert x.dtype == dtype and b.dtype == acc_dtype
            torch.testing.assert_close(b, b_ref, rtol=0, atol=2 * ulp[acc_dtype])
            torch.testing.assert_close(x, y, rtol=0, atol=w_atol)
        zeros_ref = sum(int((y == 0).sum()) for y in w_ref)
        zeros = sum(int((x == 0).sum()) for x in w)
        assert zeros_ref > 1000 and abs(zeros - zeros_ref) <= flips, (dtype, acc_dtype, zeros, zeros_ref)
        assert not any(bool((torch.signbit(x) & (x == 0)).any()) for x in w), "a pruned weight is +0.0"
        assert not launch.bind_grads([torch.randn(n + 1).to(dtype)[1:] for n in sizes])  # misaligned: refused
    print("interpreted kernel ok")
    """
).replace("CASES", CASES)

# GRDA(impl="fused") on CPU tensors, driven into the Triton path: the test (not the package) routes CPU tensors to the
# Triton launcher, which runs them in the interpreter, by patching three module functions in the child process.
END_TO_END = textwrap.dedent(
    """
    import torch
    from grda import GRDA, cpu_kernel, cuda_kernel

    cpu_kernel.supports = lambda p, g, a: False  # not the CPU kernel: fp32 would go there first
    cuda_kernel.supports = cuda_kernel.takes  # what the kernel takes, on any device
    cuda_kernel.available = lambda: True

    def triton_only(opt):
        plans = [plan for group_plans in opt._fast.plans.values() for plan in group_plans.values()]
        return plans and all(not plan.foreach and plan.kernels for plan in plans) and all(
            isinstance(launch, cuda_kernel.Launch) for plan in plans for launch, _ in plan.kernels)

    shapes = [(64, 33), (257,), (16, 4, 3, 3), (3,)]
    gen = torch.Generator().manual_seed(0)
    base = [0.1 * torch.randn(s, generator=gen) for s in shapes]
    ulp = {torch.float32: 1e-6, torch.bfloat16: 2.0**-5, torch.float16: 2.0**-8}
    for dtype, acc_dtype in CASES:
        option = "fp32" if acc_dtype == torch.float32 else "param"
        runs = {}
        for impl in ("fused", "reference"):
            params = [torch.nn.Parameter(b.to(dtype, copy=True)) for b in base]
            opt = GRDA(params, lr=0.1, c=0.6, mu=0.51, impl=impl, accumulator_dtype=option)
            g = torch.Generator().manual_seed(1)
            for _ in range(4):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g).to(dtype)
                opt.step()
            runs[impl] = (params, opt)
        (ours, opt), (ref, ref_opt) = runs["fused"], runs["reference"]
        assert triton_only(opt), (dtype, acc_dtype)
        w_atol = ulp[dtype] * (1 if acc_dtype == torch.float32 else 2)
        for p, q in zip(ours, ref):
            a, b = opt.state[p]["accumulator"], ref_opt.state[q]["accumulator"]
            assert p.dtype == dtype and a.dtype == b.dtype == acc_dtype
            torch.testing.assert_close(a, b, rtol=0, atol=2 * ulp[acc_dtype])
            torch.testing.assert_close(p, q, rtol=0, atol=w_atol)
            assert not bool((torch.signbit(p) & (p == 0)).any()), "a pruned weight is +0.0"
        zeros, zeros_ref = (sum(int((t == 0).sum()) for t in ps) for ps in (ours, ref))
        assert zeros_ref > 1000 and abs(zeros - zeros_ref) <= (2 if acc_dtype == torch.float32 else zeros_ref // 50), (
            dtype, acc_dtype, zeros, zeros_ref)

    # issue 24's regression through the Triton path: bf16 and fp16 parameters train like fp32 ones
    from tests.test_grda import regression_loss

    fp32 = regression_loss(torch.float32, impl="reference")
    for dtype in (torch.bfloat16, torch.float16):
        loss = regression_loss(dtype, impl="fused")
        assert loss <= 1.2 * fp32, (dtype, loss, fp32)
        print("regression", dtype, round(loss, 4), "fp32", round(fp32, 4))
    print("end to end ok")
    """
).replace("CASES", CASES)


def run_interpreted(code: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@needs_triton
def test_kernel_in_triton_interpreter_matches_literal_formula():
    """fp32, bf16 and fp16 parameters, with an accumulator of their dtype or float32."""
    assert "interpreted kernel ok" in run_interpreted(INTERPRETED)


@needs_triton
def test_grda_fused_runs_the_triton_path_end_to_end_in_the_interpreter():
    """GRDA(impl="fused") plans every tensor into one Triton launch and matches impl="reference"; the bf16 regression
    passes through it."""
    assert "end to end ok" in run_interpreted(END_TO_END)


def test_kernel_takes_only_tensors_of_one_shape_and_device():
    p, g = torch.randn(4, 6), torch.randn(4, 6)
    assert cuda_kernel.takes(p, g, torch.randn(4, 6)) and cuda_kernel.takes(p.bfloat16(), g.bfloat16(), p)
    for a in (torch.randn(6, 4), torch.randn(24), torch.randn(4, 6, device="meta"), torch.randn(4, 6).double()):
        assert not cuda_kernel.takes(p, g, a), a
    assert not cuda_kernel.takes(p.bfloat16(), g.bfloat16(), p.half()), "float32 or the parameter's dtype"
    assert not cuda_kernel.supports(p, g, p), "CPU tensors go elsewhere"
    with pytest.raises(ValueError, match="one device, shape and dense layout"):
        cuda_kernel.Launch([p], [g], [torch.randn(6, 4)])
    with pytest.raises(ValueError, match="one dtype"):
        cuda_kernel.Launch([p, p.bfloat16()], [g, g.bfloat16()], [p, p.bfloat16()])


def test_supports_only_cuda_tensors_of_one_dtype_and_layout():
    x = torch.randn(4, 3, 2, 2)
    assert not cuda_kernel.supports(x, x, x)  # CPU tensors go elsewhere


@needs_cuda
@needs_triton
@pytest.mark.parametrize(
    "dtype,option",
    [
        (torch.float32, "fp32"),
        (torch.bfloat16, "fp32"),
        (torch.bfloat16, "param"),
        (torch.float16, "fp32"),
        (torch.float16, "param"),
    ],
)
def test_fused_cuda_path_matches_reference_and_is_auto(dtype, option):
    torch.manual_seed(0)
    shapes = [(64, 32, 3, 3), (64,), (10, 5000), (3,)]
    base = [torch.randn(s, device="cuda").to(dtype) for s in shapes]
    runs = {}
    for impl in ("auto", "fused", "foreach", "reference"):
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = GRDA(params, lr=0.1, c=0.3, mu=0.51, impl=impl, accumulator_dtype=option)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(8):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, device="cuda").to(dtype)
            opt.step()
        runs[impl] = (params, opt)
    assert grda_module._resolve_impl("auto", runs["auto"][0]) == "fused"
    acc_dtype = torch.float32 if option == "fp32" else dtype
    # a float32 accumulator: the weights within an ulp of their dtype; a bf16/fp16 one: a - lr*g may round the
    # other way at a tie, and that ulp of the accumulator (|a| < 8) shows in w
    ulp = {torch.float32: 1e-6, torch.bfloat16: 2.0**-5, torch.float16: 2.0**-8}[dtype]
    atol, flips = (ulp, 2) if acc_dtype == torch.float32 else (2 * ulp, 100)
    ref, ref_opt = runs["reference"]
    for impl in ("auto", "fused", "foreach"):
        params, opt = runs[impl]
        for p, q in zip(params, ref):
            assert opt.state[p]["accumulator"].dtype == acc_dtype == ref_opt.state[q]["accumulator"].dtype
            torch.testing.assert_close(p, q, rtol=0, atol=atol)
            assert abs(int((p == 0).sum()) - int((q == 0).sum())) <= flips
            assert not bool((torch.signbit(p) & (p == 0)).any()), "a pruned weight is +0.0"
    assert sum(int((q == 0).sum()) for q in ref) > 100


@needs_cuda
@needs_triton
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_train_like_fp32_on_cuda(dtype):
    """Issue 24's regression through the Triton kernel (auto), against the float32 loss of the reference on the CPU."""
    from tests.test_grda import regression_loss

    fp32 = regression_loss(torch.float32, impl="reference")
    assert regression_loss(dtype, device="cuda") <= 1.2 * fp32


@needs_cuda
@needs_triton
def test_fused_cuda_path_follows_new_gradient_addresses():
    """Gradients freed and reallocated between steps (zero_grad's default) must be read at their new address."""
    p = torch.nn.Parameter(torch.randn(10000, device="cuda"))
    q = torch.nn.Parameter(p.detach().clone())
    opt, ref = GRDA([p], lr=0.1, c=0.1, mu=0.6, impl="fused"), GRDA([q], lr=0.1, c=0.1, mu=0.6, impl="reference")
    keep = []
    for _ in range(5):
        g = torch.randn(10000, device="cuda")
        keep.append(torch.empty(12345, device="cuda"))  # shift the allocator so addresses change
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert int((q == 0).sum()) > 100 and not bool((torch.signbit(p) & (p == 0)).any()), "a pruned weight is +0.0"


@pytest.mark.slow
def test_importing_the_optimizer_does_not_import_triton():
    """Triton costs ~75 MB of memory: the optimizer imports it only to update CUDA tensors (torchvision, which the
    harness imports, brings it in anyway)."""
    code = "import sys, grda; grda.GRDA; assert 'triton' not in sys.modules, 'triton imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
