"""The fused CPU kernel (src/optim/grda/grda_cpu.c) against the literal formula, bit for bit, and its fallbacks.

The reference is the element formula written out here with torch ops in float32, not the optimizer's own paths.
"""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
import warnings

import pytest
import torch

from grda import GRDA, cpu_kernel
from grda import optimizer as grda_module

pytestmark = pytest.mark.xdist_group("cpu_kernel")  # the tests below change the kernel module's globals


def bits(t: torch.Tensor) -> torch.Tensor:
    """Exact bit patterns: tells -0.0 from 0.0 and compares NaNs."""
    return t.detach().contiguous().view(torch.int32)


def literal_step(w: torch.Tensor, a: torch.Tensor, g: torch.Tensor, lr: float, tau: float) -> None:
    """a <- a - lr * g; w <- sign(a) * max(|a| - tau, 0) + 0.0, as ATen rounds it (one fused multiply-add); the
    + 0.0 makes the zeros of negative accumulators +0.0, as every implementation writes them."""
    a.add_(g, alpha=-lr)
    w.copy_(torch.sign(a) * torch.clamp(a.abs() - tau, min=0) + 0.0)


def make_tensors(sizes, seed=0, offset=0):
    """(w, a, g) triples; ``offset`` > 0 makes each a view starting that many floats into its storage,
    so the kernel's alignment prologue and tail both run."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        triple = [torch.randn(n + offset, generator=gen)[offset:] for _ in range(3)]
        triple[1].copy_(triple[0])  # the accumulator starts at the weight
        out.append(triple)
    return out


def kernel_has_fma() -> bool:
    cpu = open("/proc/cpuinfo").read() if platform.machine() == "x86_64" else ""
    return " avx2 " in cpu and " fma " in cpu


@pytest.fixture
def kernel_settings(monkeypatch):
    """Let a test force streaming stores and threads on small tensors."""

    def set_(streaming: bool, threads: int):
        monkeypatch.setattr(cpu_kernel, "STREAMING_MIN_BYTES", 0 if streaming else 2**62)
        monkeypatch.setattr(cpu_kernel, "MIN_NUMEL_PER_THREAD", 1)
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)

    return set_


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("offset", [0, 3])
def test_kernel_matches_literal_formula_bitwise(kernel_settings, streaming, threads, offset):
    assert cpu_kernel.available(), "the CI machine has a C compiler: the kernel must build"
    kernel_settings(streaming, threads)
    sizes = [1, 7, 8, 9, 15, 16, 17, 33, 1000, 4099, 70001]  # straddle vector widths, alignment and thread shares
    ours, ref = make_tensors(sizes, offset=offset), make_tensors(sizes, offset=offset)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 6):
        lr, tau = 0.1, 0.15 * step
        grads = [torch.randn(n, generator=gen) for n in sizes]
        cpu_kernel.update([t[0] for t in ours], grads, [t[1] for t in ours], lr=lr, tau=tau)
        for (w, a, _), g in zip(ref, grads):
            literal_step(w, a, g, lr, tau)
    zeros = zeros_of_negatives = 0
    for (w, a, _), (w_ref, a_ref, _) in zip(ours, ref):
        if kernel_has_fma():
            assert torch.equal(bits(a), bits(a_ref)) and torch.equal(bits(w), bits(w_ref))
        else:  # the portable loop may round a - lr*g differently from ATen by an ulp
            torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-6)
        assert not (torch.signbit(w) & (w == 0)).any(), "a pruned weight is +0.0, never -0.0"
        zeros += int((w_ref == 0).sum())
        zeros_of_negatives += int(((w_ref == 0) & (a_ref < 0)).sum())
    assert zeros > 1000 and zeros_of_negatives > 100, "the case must exercise both branches and negative accumulators"


def test_kernel_propagates_nan_and_inf_like_the_formula():
    w, a, g = (torch.zeros(23) for _ in range(3))
    a[:20] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.05, -0.05] * 4)
    g[20:] = torch.tensor([float("nan"), 1.0, -1.0])  # a non-finite gradient, and a = -0.1 and +0.1 exactly at tau
    cpu_kernel.update([w], [g], [a], lr=0.1, tau=0.1)
    want = torch.sign(a) * torch.clamp(a.abs() - 0.1, min=0) + 0.0
    assert torch.equal(w.isnan(), want.isnan()) and w.isnan().sum() == 5
    assert torch.equal(bits(w[~w.isnan()]), bits(want[~want.isnan()]))


def test_optimizer_fused_path_equals_reference_and_is_auto_on_cpu():
    torch.manual_seed(2)
    shapes = [(64, 32, 3, 3), (64,), (10, 513), (3,)]
    base = [torch.randn(s) for s in shapes]
    runs = {}
    for impl in ("auto", "fused", "reference"):
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = GRDA(params, lr=0.1, c=0.3, mu=0.51, impl=impl)
        gen = torch.Generator().manual_seed(3)
        for _ in range(8):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        runs[impl] = params
    assert grda_module._resolve_impl("auto", runs["auto"]) == "fused"
    assert grda_module._resolve_impl("auto", [p.double() for p in runs["auto"]]) == "foreach"
    for impl in ("auto", "fused"):
        for p, q in zip(runs[impl], runs["reference"]):
            if kernel_has_fma():
                assert torch.equal(bits(p), bits(q)), impl
            else:
                torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert sum(int((q == 0).sum()) for q in runs["reference"]) > 100


def test_tensors_the_kernel_cannot_take_go_through_foreach():
    """bf16, float64 and a channels_last weight with a contiguous gradient, beside ones the kernel takes."""
    torch.manual_seed(4)
    made = [
        torch.randn(40, 30),
        torch.randn(50).bfloat16(),
        torch.randn(20).double(),
        torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last),
        torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last),
    ]
    grads = [torch.randn(t.shape, dtype=t.dtype) for t in made]
    grads[4] = grads[4].to(memory_format=torch.channels_last)  # same layout as its weight: the kernel takes it
    assert [cpu_kernel.supports(t, g, t) for t, g in zip(made, grads)] == [True, False, False, False, True]
    runs = {}
    for impl in ("fused", "reference"):
        params = [torch.nn.Parameter(t.clone(memory_format=torch.preserve_format)) for t in made]
        opt = GRDA(params, lr=0.1, c=0.5, mu=0.6, impl=impl)
        for _ in range(4):
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        runs[impl] = params
    for p, q in zip(runs["fused"], runs["reference"]):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6 if p.dtype != torch.bfloat16 else 1e-2)
        assert p.dtype == q.dtype and p.stride() == q.stride()


def count_plans(monkeypatch) -> list:
    made = []
    original = grda_module._Plan.__init__

    def counting(self, *args):
        made.append(self)
        original(self, *args)

    monkeypatch.setattr(grda_module._Plan, "__init__", counting)
    return made


def test_plan_is_kept_while_gradients_move(monkeypatch):
    """On the CPU every backward leaves its gradients at new addresses: the plan stays, the gradients are rebound."""
    made = count_plans(monkeypatch)
    torch.manual_seed(5)
    base = [torch.randn(s) for s in [(30, 20), (20,), (7,)]]
    runs, kept = {}, []
    for impl in ("fused", "reference"):
        params = [torch.nn.Parameter(b.clone()) for b in base]
        opt = GRDA(params, lr=0.1, c=0.3, mu=0.51, impl=impl)
        gen = torch.Generator().manual_seed(6)
        for _ in range(5):
            grads = [torch.randn(p.shape, generator=gen) for p in params]
            kept.append(grads)  # keep them alive, so the next ones cannot reuse their memory
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        runs[impl] = params
    assert len(made) == 1, "one plan for five steps"
    for p, q in zip(runs["fused"], runs["reference"]):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_a_gradient_in_another_layout_gets_a_new_plan(monkeypatch):
    """A channels_last weight: its channels_last gradient goes through the kernel, gradients in other layouts (set by
    hand) through foreach; each is read correctly."""
    made = count_plans(monkeypatch)
    torch.manual_seed(7)
    w = torch.randn(4, 3, 2, 5).to(memory_format=torch.channels_last)
    shape = w.shape
    layouts = [
        lambda g: g.to(memory_format=torch.channels_last),
        lambda g: g.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3),  # neither contiguous nor channels_last
        lambda g: g.contiguous(),
        lambda g: g.to(memory_format=torch.channels_last),
    ]
    grads = [torch.randn(shape) for _ in layouts]
    runs = {}
    for impl in ("fused", "reference"):
        p = torch.nn.Parameter(w.clone(memory_format=torch.preserve_format))
        opt = GRDA([p], lr=0.1, c=2.0, mu=0.6, impl=impl)
        for layout, g in zip(layouts, grads):
            p.grad = layout(g.clone())
            opt.step()
        runs[impl] = p
    assert len(made) == 4, "a plan for each change of layout"
    torch.testing.assert_close(runs["fused"], runs["reference"], rtol=0, atol=1e-6)
    assert int((runs["reference"] == 0).sum()) > 10


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """A kernel module with nothing built or loaded yet, caching in tmp_path."""
    monkeypatch.setattr(cpu_kernel, "_library", None)
    monkeypatch.setattr(cpu_kernel, "_build_error", None)
    monkeypatch.setenv("GRDA_KERNEL_CACHE", str(tmp_path))
    return tmp_path


def test_without_a_compiler_the_optimizer_warns_once_and_uses_foreach(fresh_kernel, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_kernel / "no-such-cc"))
    p = torch.nn.Parameter(torch.randn(300))
    q = torch.nn.Parameter(p.detach().clone())
    opt, ref = GRDA([p], lr=0.1, c=0.2, mu=0.6), GRDA([q], lr=0.1, c=0.2, mu=0.6, impl="reference")
    with pytest.warns(UserWarning, match="fused CPU kernel is unavailable.*using impl='foreach'"):
        for _ in range(3):
            for o, t in ((opt, p), (ref, q)):
                t.grad = torch.ones(300)
                o.step()
    assert torch.equal(p, q)
    assert grda_module._resolve_impl("auto", [p]) == "foreach"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        GRDA([p], lr=0.1, c=0.2, mu=0.6, impl="fused").step()


def test_kernel_is_built_once_and_cached(fresh_kernel, monkeypatch):
    assert cpu_kernel.available()
    built = cpu_kernel.library_path()
    assert built.parent == fresh_kernel and built.exists()
    assert not list(fresh_kernel.glob(".*.tmp")), "no temp file left behind"
    mtime = built.stat().st_mtime_ns
    monkeypatch.setattr(cpu_kernel, "_library", None)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although the cached library exists")

    monkeypatch.setattr(cpu_kernel, "build_library", no_build)
    assert cpu_kernel.available() and built.stat().st_mtime_ns == mtime


def test_a_broken_cached_library_is_rebuilt(fresh_kernel):
    path = cpu_kernel.library_path()
    path.write_bytes(b"not a shared library")
    assert cpu_kernel.available()
    ctypes.CDLL(str(path))  # loadable now


def test_an_unwritable_cache_folder_falls_back_to_a_temp_folder(fresh_kernel, monkeypatch):
    blocker = fresh_kernel / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GRDA_KERNEL_CACHE", str(blocker / "cache"))  # cannot be created: its parent is a file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernel.available()


@pytest.mark.slow
def test_portable_loop_matches_literal_formula(tmp_path):
    """The loop used off x86-64 (or without AVX2/FMA), built on its own with GRDA_PORTABLE."""
    out = tmp_path / "portable.so"
    cmd = [*cpu_kernel.compiler(), *cpu_kernel.FLAGS, "-DGRDA_PORTABLE", str(cpu_kernel.SOURCE), "-o", str(out)]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(str(out))
    sizes = [5, 64, 1001]
    ours, ref = make_tensors(sizes, seed=5), make_tensors(sizes, seed=5)
    grads = [torch.randn(n) for n in sizes]

    def pointers(tensors):
        return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])

    lib.grda_update_f32(
        ctypes.c_int64(len(sizes)),
        pointers([t[0] for t in ours]),
        pointers([t[1] for t in ours]),
        pointers(grads),
        (ctypes.c_int64 * len(sizes))(*sizes),
        ctypes.c_float(0.1),
        ctypes.c_float(0.5),
        ctypes.c_int(0),
        ctypes.c_int(1),
    )
    for (w, _, _), (w_ref, a_ref, _), g in zip(ours, ref, grads):
        literal_step(w_ref, a_ref, g, 0.1, 0.5)
        torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-6)
        assert torch.equal(w == 0, w_ref == 0)
        assert not (torch.signbit(w) & (w == 0)).any()


def test_kernel_refuses_tensors_of_other_shapes_or_devices():
    """The kernel walks p.numel() elements of each: an accumulator of another shape (a mismatched state dict), even
    with as many elements, or on another device, goes through foreach."""
    p, g = torch.randn(4, 6), torch.randn(4, 6)
    assert cpu_kernel.supports(p, g, torch.randn(4, 6))
    for a in (torch.randn(6, 4), torch.randn(24), torch.randn(3), torch.randn(4, 6, device="meta")):
        assert not cpu_kernel.supports(p, g, a), a.shape
        assert not cpu_kernel.supports(p, a, g), a.shape


MISMATCHED_ACCUMULATOR = """
import torch
from grda import GRDA, cpu_kernel

p = torch.nn.Parameter(torch.randn(1 << 20))
for impl in ("auto", "fused"):
    opt = GRDA([p], lr=0.1, c=0.1, mu=0.6, impl=impl)
    p.grad = torch.randn(1 << 20)
    opt.step()
    opt.state[p]["accumulator"] = torch.zeros(3)  # what a mismatched state dict leaves, loaded around the check
    try:
        opt.step()
    except RuntimeError as e:
        print(impl, "raised", type(e).__name__)
try:  # the kernel's own entry point, handed the same tensors
    cpu_kernel.update([p.detach()], [torch.randn(1 << 20)], [torch.zeros(3)], lr=0.1, tau=0.1)
except ValueError as e:
    print("update raised", type(e).__name__)
"""


@pytest.mark.slow
def test_an_accumulator_of_another_shape_is_an_error_not_a_crash():
    """In a child process: the kernel used to read 4 MB past a 12-byte accumulator (a segfault, or garbage)."""
    done = subprocess.run([sys.executable, "-c", MISMATCHED_ACCUMULATOR], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "auto raised RuntimeError" in done.stdout and "fused raised RuntimeError" in done.stdout, done.stdout
    assert "update raised ValueError" in done.stdout, done.stdout
