"""GRDA's accumulator_init="uniform" (the authors' figure-era Keras rule) against its documented closed form.

With a_0 ~ U(-r, r) drawn as documented (float32 torch.rand from Generator(seed + position), scaled to [-r, r)),
w_n = S_{tau_n}(a_0 - lr * sum_k g_k): the model's own initial weights never enter.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from grda import GRDA

IMPLS = ["auto", "fused", "foreach", "reference", "compiled"]


def documented_start(shape, bound: float, seed: int) -> np.ndarray:
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return ((2 * u - 1) * bound).double().numpy()


def numpy_closed_form(a0, grads, lr, c, mu):
    n = len(grads)
    tau = c * np.sqrt(lr) * (n * lr) ** mu
    a = a0 - lr * np.sum(grads, axis=0)
    return np.sign(a) * np.maximum(np.abs(a) - tau, 0.0)


def train(shapes, grads, dtype=torch.float64, init_scale=1.0, **kwargs):
    params = [torch.nn.Parameter(init_scale * torch.randn(s, dtype=dtype)) for s in shapes]
    opt = GRDA(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
    return params, opt


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_uniform_start_matches_closed_form(impl):
    rng = np.random.default_rng(1)
    shapes = [(16, 9), (16,), (3, 4, 5)]
    grads = [[rng.normal(scale=0.2, size=s) for s in shapes] for _ in range(25)]
    lr, c, mu, bound, seed = 0.05, 0.3, 0.6, 0.1, 7
    dtype = torch.float64 if impl != "fused" else torch.float32
    params, _ = train(
        shapes,
        grads,
        dtype=dtype,
        lr=lr,
        c=c,
        mu=mu,
        impl=impl,
        accumulator_init="uniform",
        accumulator_range=bound,
        accumulator_seed=seed,
    )
    for i, (p, s) in enumerate(zip(params, shapes)):
        want = numpy_closed_form(documented_start(s, bound, seed + i), [g[i] for g in grads], lr, c, mu)
        tol = 1e-12 if dtype == torch.float64 else 2e-6
        np.testing.assert_allclose(p.detach().double().numpy(), want, atol=tol)
        assert (want == 0).any() and (want != 0).any(), "the case must exercise both branches"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where one is lent)")
@pytest.mark.parametrize("impl", ["auto", "fused", "foreach", "reference"])
def test_uniform_start_on_cuda_matches_closed_form(impl):
    """The same documented draw on the GPU (Triton kernel for auto/fused): the start does not depend on the device."""
    rng = np.random.default_rng(2)
    shapes = [(64, 9), (64,)]
    grads = [[rng.normal(scale=0.2, size=s) for s in shapes] for _ in range(20)]
    lr, c, mu, bound, seed = 0.05, 0.3, 0.6, 0.1, 11
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    opt = GRDA(
        params, lr=lr, c=c, mu=mu, impl=impl, accumulator_init="uniform", accumulator_range=bound, accumulator_seed=seed
    )
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, dtype=torch.float32, device="cuda")
        opt.step()
    for i, (p, s) in enumerate(zip(params, shapes)):
        want = numpy_closed_form(documented_start(s, bound, seed + i), [g[i] for g in grads], lr, c, mu)
        np.testing.assert_allclose(p.detach().double().cpu().numpy(), want, atol=2e-6)
        assert (want == 0).any() and (want != 0).any(), "the case must exercise both branches"
        assert not bool((torch.signbit(p) & (p == 0)).any()), "a pruned weight is +0.0"


@pytest.mark.slow
def test_initial_weights_do_not_matter_and_weights_start_does():
    shapes = [(30, 20)]
    grads = [[np.full(shapes[0], 0.01)] for _ in range(3)]
    kwargs = dict(lr=0.1, c=0.01, mu=0.51, accumulator_init="uniform")
    torch.manual_seed(0)
    small, _ = train(shapes, grads, init_scale=0.01, **kwargs)
    torch.manual_seed(1)
    large, _ = train(shapes, grads, init_scale=10.0, **kwargs)
    torch.testing.assert_close(small[0], large[0], rtol=0, atol=0)
    torch.manual_seed(1)
    from_weights, _ = train(shapes, grads, init_scale=10.0, **{**kwargs, "accumulator_init": "weights"})
    assert not torch.equal(from_weights[0], large[0])


@pytest.mark.slow
def test_uniform_start_range_and_independence():
    params, opt = train(
        [(200, 100), (200, 100)],
        [[np.zeros((200, 100))] * 2],
        lr=1e-8,
        c=0.0,
        mu=0.7,
        accumulator_init="uniform",
        accumulator_range=0.25,
    )
    a, b = (opt.state[p]["accumulator"] for p in params)
    for acc in (a, b):
        assert acc.min() >= -0.25 and acc.max() < 0.25
        assert abs(acc.mean().item()) < 0.005 and abs(acc.std().item() - 0.25 / 3**0.5) < 0.005
    assert not torch.equal(a, b), "each parameter draws its own start"


def test_position_counts_across_groups():
    shapes = [(5, 5), (7,)]
    grads = [[np.zeros(s) for s in shapes]]
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes]
    opt = GRDA(
        [{"params": [params[0]]}, {"params": [params[1]]}],
        lr=0.1,
        c=0.0,
        mu=0.7,
        accumulator_init="uniform",
        accumulator_seed=3,
    )
    for p, g in zip(params, grads[0]):
        p.grad = torch.tensor(g)
    opt.step()
    for i, (p, s) in enumerate(zip(params, shapes)):
        np.testing.assert_array_equal(opt.state[p]["accumulator"].numpy(), documented_start(s, 0.1, 3 + i))


def test_same_start_on_every_layout():
    dense = torch.nn.Parameter(torch.zeros(4, 3, 5, 5))
    channels_last = torch.nn.Parameter(torch.zeros(4, 3, 5, 5).to(memory_format=torch.channels_last))
    starts = []
    for p in (dense, channels_last):
        opt = GRDA([p], lr=0.1, c=0.0, mu=0.7, accumulator_init="uniform")
        p.grad = torch.zeros_like(p)
        opt.step()
        starts.append(opt.state[p]["accumulator"])
    assert starts[1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(starts[0], starts[1], rtol=0, atol=0)


def test_uniform_start_survives_state_dict_resume():
    torch.manual_seed(0)
    model = torch.nn.Linear(12, 4)
    opt = GRDA(model.parameters(), lr=0.05, c=0.05, mu=0.7, accumulator_init="uniform", accumulator_seed=11)
    x, y = torch.randn(64, 12), torch.randn(64, 4)

    def step(m, o):
        o.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        o.step()

    for _ in range(5):
        step(model, opt)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    for _ in range(5):
        step(model, opt)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = torch.nn.Linear(12, 4)
    resumed.load_state_dict(saved["model"])
    resumed_opt = GRDA(resumed.parameters(), lr=0.05, c=0.05, mu=0.7)  # the saved groups bring their settings
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.param_groups[0]["accumulator_init"] == "uniform"
    for _ in range(5):
        step(resumed, resumed_opt)
    for a, b in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_old_state_dicts_without_the_option_load_as_weights():
    p = torch.nn.Parameter(torch.ones(3))
    opt = GRDA([p], lr=0.1, c=0.1, mu=0.7)
    state = copy.deepcopy(opt.state_dict())
    for key in ("accumulator_init", "accumulator_range", "accumulator_seed"):
        del state["param_groups"][0][key]
    fresh = GRDA([p], lr=0.1, c=0.1, mu=0.7)
    fresh.__setstate__({"state": {}, "param_groups": [dict(g) for g in state["param_groups"]]})
    assert fresh.param_groups[0]["accumulator_init"] == "weights"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(accumulator_init="normal"), "accumulator_init must be one of"),
        (dict(accumulator_init="uniform", accumulator_range=0.0), "accumulator_range"),
        (dict(accumulator_range=float("nan")), "accumulator_range"),
        (dict(accumulator_seed=-1), "accumulator_seed"),
        (dict(accumulator_seed=1.5), "accumulator_seed"),
    ],
)
def test_invalid_accumulator_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRDA([torch.nn.Parameter(torch.zeros(2))], lr=0.1, c=0.1, mu=0.7, **kwargs)
