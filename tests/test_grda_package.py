"""The ``grda`` distribution (src/optim): canonical zeros in every implementation, per-optimizer caches, the
weight_decay rule, the sparsity helpers, lazy imports, and the wheel installed on its own, away from the harness.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import grda
from grda import GRDA
from grda import optimizer as grda_module

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "optim"
SITE = Path(torch.__file__).resolve().parents[1]  # the site-packages that holds torch


def negative_zeros(t: torch.Tensor) -> int:
    return int((torch.signbit(t) & (t == 0)).sum())


# ---------------------------------------------------------------- canonical zeros


def accumulators_half_negative_under_threshold(dtype=torch.float32):
    """Weights of which half are negative and small enough to fall under the first threshold, a quarter positive and
    small, the rest large; one NaN."""
    g = torch.Generator().manual_seed(0)
    shapes = [(64, 33), (257,), (16, 4, 3, 3)]
    out = []
    for shape in shapes:
        w = torch.rand(shape, generator=g) * 0.05
        sign = torch.rand(shape, generator=g)
        w = torch.where(sign < 0.5, -w, w)  # half negative, |w| < 0.05 < tau after the first step
        big = torch.rand(shape, generator=g) < 0.25
        w = torch.where(big, torch.randn(shape, generator=g), w)
        out.append(w.to(dtype))
    out[1][7] = float("nan")
    return out


@pytest.mark.parametrize(
    "impl,dtype",
    [
        ("auto", torch.float32),
        ("fused", torch.float32),
        ("foreach", torch.float32),
        ("reference", torch.float32),
        ("foreach", torch.bfloat16),
        ("reference", torch.float64),
        pytest.param("compiled", torch.float32, marks=pytest.mark.slow),
    ],
)
def test_pruned_weights_are_positive_zero_in_every_implementation(impl, dtype):
    base = accumulators_half_negative_under_threshold(dtype)
    params = [torch.nn.Parameter(b.clone()) for b in base]
    opt = GRDA(params, lr=0.1, c=1.0, mu=0.6, impl=impl)  # tau after one step: 0.079
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for p in params:
            p.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(dtype)  # keeps the small ones small
        opt.step()
    zeros = sum(int((p == 0).sum()) for p in params)
    under = sum(int(((p == 0) & (opt.state[p]["accumulator"] < 0)).sum()) for p in params)
    assert zeros > 1000 and under > 500, "half the accumulators are negative and under the threshold"
    assert sum(negative_zeros(p) for p in params) == 0, "a pruned weight is +0.0, never -0.0"
    assert torch.isnan(params[1][7]), "a NaN accumulator gives a NaN weight"


def test_reference_formula_is_canonical():
    a = torch.tensor([-0.5, -0.05, -0.0, 0.0, 0.05, 0.5, float("nan"), -float("inf")])
    w = grda.soft_threshold(a, 0.1)
    assert negative_zeros(w) == 0
    assert torch.equal(w[[0, 5]], torch.tensor([-0.4, 0.4])) and w.isnan()[6] and w[7] == -float("inf")


# ---------------------------------------------------------------- per-optimizer caches

GROUPS = [
    dict(lr=0.1, c=0.5, mu=0.51),
    dict(lr=0.05, c=1.0, mu=0.6),
    dict(lr=0.2, c=0.1, mu=0.7),
    dict(lr=0.1, c=0.0, mu=0.55),
    dict(lr=0.02, c=2.0, mu=0.9),
]


def _optimizer(which: int):
    """Optimizer ``which`` (0 or 1) with five groups of two fp32 tensors each: what the fused CPU kernel takes."""
    g = torch.Generator().manual_seed(10 + which)
    params = [
        [
            torch.nn.Parameter(torch.randn(40 + 3 * i + which, 7, generator=g)),
            torch.nn.Parameter(torch.randn(9 + i, generator=g)),
        ]
        for i in range(len(GROUPS))
    ]
    opt = GRDA([dict(params=ps, **hp) for ps, hp in zip(params, GROUPS)], impl="fused")
    return [p for ps in params for p in ps], opt


def _steps(which: int, step: int, params):
    g = torch.Generator().manual_seed(1000 * which + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def _solo(which: int, out: str, steps: int) -> None:
    """One optimizer alone in its process (run by the test below in a subprocess)."""
    params, opt = _optimizer(which)
    for step in range(steps):
        _steps(which, step, params)
        opt.step()
    torch.save([p.detach() for p in params], out)


@pytest.mark.slow
def test_two_optimizers_with_several_groups_keep_their_plans(monkeypatch, tmp_path):
    made = []
    original = grda_module._Plan.__init__

    def counting(self, *args):
        made.append(self)
        original(self, *args)

    monkeypatch.setattr(grda_module._Plan, "__init__", counting)
    runs = [_optimizer(0), _optimizer(1)]
    steps = 10
    kept = []
    for step in range(steps):
        for which, (params, opt) in enumerate(runs):
            _steps(which, step, params)
            kept.append([p.grad for p in params])  # the next gradients land at new addresses
            opt.step()
        if step == 0:
            assert len(made) == 2 * len(GROUPS), "one plan per group and optimizer"
    assert len(made) == 2 * len(GROUPS), "no plan rebuilt after the first step"
    for _, opt in runs:
        assert len(opt._fast.plans) == len(GROUPS) and all(len(p) == 1 for p in opt._fast.plans.values())
    assert runs[0][1]._fast is not runs[1][1]._fast
    for which, (params, _) in enumerate(runs):
        out = tmp_path / f"solo{which}.pt"
        code = f"from tests.test_grda_package import _solo; _solo({which}, {str(out)!r}, {steps})"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        for p, q in zip(params, torch.load(out)):
            assert torch.equal(p.detach(), q), "the same weights as the optimizer alone in its own process"


def test_caches_are_neither_pickled_nor_copied():
    params, opt = _optimizer(0)
    for step in range(2):
        _steps(0, step, params)
        opt.step()
    assert opt._fast.plans
    assert "_fast" not in opt.__getstate__() and "_fast" not in str(opt.state_dict().keys())
    for twin in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert twin._fast is not opt._fast and not twin._fast.plans and not twin._fast.groups
        twin_params = [p for g in twin.param_groups for p in g["params"]]
        for p, q in zip(params, twin_params):
            q.grad = p.grad.clone()
        twin.step()
        assert len(twin._fast.plans) == len(GROUPS)
        assert all(twin.state[q]["step"] == 3 for q in twin_params)
    assert all(opt.state[p]["step"] == 2 for p in params)


def test_load_state_dict_drops_the_plans_of_replaced_groups():
    params, opt = _optimizer(0)
    for step in range(3):
        _steps(0, step, params)
        opt.step()
        opt.load_state_dict(opt.state_dict())  # new group dicts and new accumulators each time
    _steps(0, 3, params)
    opt.step()
    assert len(opt._fast.plans) == len(GROUPS), "plans of the replaced groups are let go"


# ---------------------------------------------------------------- weight_decay


def test_weight_decay_zero_is_accepted_and_anything_else_refused():
    p, q = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))
    opt = GRDA([dict(params=[p], weight_decay=0.0), dict(params=[q], weight_decay=0)], lr=0.1, weight_decay=0.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0]
    with pytest.raises(ValueError, match="GRDA has no weight decay.*weight_decay=0.0001"):
        GRDA([p], lr=0.1, weight_decay=1e-4)
    with pytest.raises(ValueError, match="GRDA has no weight decay"):
        GRDA([dict(params=[p], weight_decay=0.01), dict(params=[q], weight_decay=0.0)], lr=0.1)


def test_state_dicts_without_weight_decay_still_load():
    p = torch.nn.Parameter(torch.randn(4))
    opt = GRDA([p], lr=0.1)
    p.grad = torch.randn(4)
    opt.step()
    old = opt.state_dict()
    del old["param_groups"][0]["weight_decay"]  # as saved before GRDA had the key
    again = GRDA([p], lr=0.1)
    again.load_state_dict(old)
    assert again.param_groups[0]["weight_decay"] == 0.0
    again.step()


# ---------------------------------------------------------------- sparsity helpers


def test_sparsity_helpers_count_exact_zeros():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, -0.0, 1.0, float("nan")]] * 5))  # 10 zeros of 20; NaN is not one
        model[0].bias.zero_()
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(0.0)
    model[1].bias.requires_grad_(False)
    counts = grda.zero_counts(model)
    assert counts == {"0.weight": (10, 20), "0.bias": (5, 5), "1.weight": (0, 10)}
    assert grda.sparsity(model) == pytest.approx(15 / 35) and grda.global_sparsity is grda.sparsity
    assert grda.layer_sparsity(model) == {"0.weight": 0.5, "0.bias": 1.0, "1.weight": 0.0}
    assert grda.zero_counts(model, trainable_only=False)["1.bias"] == (2, 2)
    assert grda.sparsity(model.state_dict()) == pytest.approx(17 / 37)
    assert grda.sparsity([torch.zeros(3), torch.ones(1)]) == 0.75 and grda.sparsity([]) == 0.0


# ---------------------------------------------------------------- the package on its own


@pytest.mark.slow
def test_import_grda_is_light_and_versioned():
    code = (
        "import sys, grda\nassert 'torch' not in sys.modules, 'import grda imported torch'\n"
        "from grda import GRDA\nassert 'torch' in sys.modules\nprint(grda.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == grda.__version__ == importlib.metadata.version("grda")
    assert 'version = { attr = "grda._version.__version__" }' in (PACKAGE / "pyproject.toml").read_text()
    assert set(grda.__all__) <= set(dir(grda))


def test_nothing_in_the_package_imports_the_harness():
    for path in (PACKAGE / "grda").rglob("*.py"):
        text = path.read_text()
        assert "from src" not in text and "import src" not in text and "hydra" not in text, path


def site_view(tmp: Path, exclude: tuple) -> Path:
    """A copy of torch's site-packages made of links, without the entries whose names start with ``exclude``."""
    view = tmp / "site"
    view.mkdir()
    for entry in SITE.iterdir():
        if not entry.name.lower().startswith(exclude) and entry.name != "__pycache__":
            (view / entry.name).symlink_to(entry)
    return view


# hydra, omegaconf, the harness (src, its editable finder and metadata) and the editable grda are all left out
HARNESS = ("hydra", "omegaconf", "__editable__", "grda", "src", "tests", "_distutils_hack", "distutils-precedence")

ISOLATED_STEP = textwrap.dedent(
    """
    import sys
    target, site = sys.argv[1], sys.argv[2]
    sys.path[:] = [p for p in sys.path if "site-packages" not in p] + [target, site]
    import importlib.metadata, importlib.util
    import grda
    from grda import GRDA, cpu_kernel
    import torch
    assert grda.__file__.startswith(target), grda.__file__
    assert importlib.metadata.version("grda") == grda.__version__
    assert str(cpu_kernel.SOURCE).startswith(target) and cpu_kernel.SOURCE.is_file()
    for name in ("hydra", "omegaconf", "src"):
        assert importlib.util.find_spec(name) is None, name + " is importable"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 3))
    opt = GRDA(model.parameters(), lr=0.1, c=0.5, mu=0.6)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(8, 20)), torch.randint(0, 3, (8,))).backward()
        opt.step()
    assert cpu_kernel.available(), "the kernel builds from the wheel's source"
    plans = [plan for group in opt._fast.plans.values() for plan in group.values()]
    assert plans and all(plan.kernels for plan in plans), "the fused kernel ran"
    assert not [m for m in sys.modules if m.split(".")[0] in ("hydra", "omegaconf", "src")]
    print("OK", grda.__version__, grda.sparsity(model))
    """
)

KERAS_WITHOUT_TORCH = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    target, site = sys.argv[1], sys.argv[2]
    sys.path[:] = [p for p in sys.path if "site-packages" not in p] + [target, site]
    import importlib.util
    assert importlib.util.find_spec("torch") is None, "torch is importable"
    import numpy as np
    import keras
    from grda.keras import GRDA
    import grda
    w0 = np.concatenate([-np.full(50, 0.01), np.full(50, 0.01), np.linspace(-1, 1, 20)]).astype("float32")
    v = keras.Variable(w0)
    opt = GRDA(learning_rate=0.1, c=1.0, mu=0.6)
    for _ in range(3):
        opt.apply([np.zeros(120, "float32")], [v])
    w = keras.ops.convert_to_numpy(v)
    assert (w == 0).sum() >= 100 and not np.signbit(w[w == 0]).any(), "pruned weights are +0.0"
    assert "torch" not in sys.modules
    print("OK keras", keras.backend.backend(), grda.__version__)
    """
)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """``pip wheel --no-deps src/optim`` (from a copy, so that the build leaves nothing in the work tree), installed
    with ``pip install --no-deps --target``."""
    base = tmp_path_factory.mktemp("wheel")
    project = base / "project"
    shutil.copytree(PACKAGE, project, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", str(project), "-w", str(base / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        build.append("--no-build-isolation")  # build with this environment's setuptools: no download
    done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (base / "dist").glob("grda-*.whl")
    target = base / "target"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return wheel, target, base


@pytest.mark.slow
def test_wheel_contents_and_metadata(installed_wheel):
    wheel, _, _ = installed_wheel
    assert wheel.name == f"grda-{grda.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
    assert "grda/grda_cpu.c" in names and "grda/py.typed" in names and "grda/__init__.py" in names
    assert all(n.startswith(("grda/", "grda-")) for n in names), "nothing but the grda package"
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == []  # torch is an extra: grda[keras] brings none
    torch_extra = [r.split(";")[0].replace(" ", "") for r in requires if 'extra == "torch"' in r]
    assert torch_extra in (["torch<3,>=2.4"], ["torch>=2.4,<3"]), requires
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert {"torch", "keras", "timm", "lightning", "transformers"} <= extras


@pytest.mark.slow
def test_wheel_runs_a_step_without_the_harness(installed_wheel, tmp_path):
    _, target, base = installed_wheel
    site = site_view(tmp_path, HARNESS)
    env = {**os.environ, "GRDA_KERNEL_CACHE": str(tmp_path / "kernel-cache")}  # built anew from the wheel's source
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ISOLATED_STEP, str(target), str(site)],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"OK {grda.__version__}")
    assert list((tmp_path / "kernel-cache").glob("grda_cpu_*.so"))


@pytest.mark.slow
def test_keras_class_imports_and_runs_without_torch(installed_wheel, tmp_path):
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("needs keras and jax (the keras and jax extras)")
    _, target, base = installed_wheel
    site = site_view(tmp_path, HARNESS + ("torch", "functorch", "triton"))
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", KERAS_WITHOUT_TORCH, str(target), str(site)],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith("OK keras jax")
