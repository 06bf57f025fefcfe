"""gRDA for Keras 3 (grda.keras, src/optim/grda/keras.py), on the backend KERAS_BACKEND names (torch when unset).

Checked against an independent float64 NumPy computation (the closed form
w_n = S_{tau_n}(w_0 - lr * sum_k g_k), tau_n = c * sqrt(lr) * (n * lr) ** mu, and a NumPy recurrence
for model.fit on linear regression), against the PyTorch optimizer grda.GRDA (including an
lr change mid-run), against keras.optimizers.SGD for c = 0, and through model.save / load_model.
The same closed-form and model.fit checks run on every other installed backend in a child process. Also
bfloat16/float16 variables (float32 accumulators) and a 1-epoch run of scripts/analysis/keras_cifar10_cnn.py on a
generated folder. What needs an absent framework (the PyTorch optimizer, the harness) is skipped: `make test` also
runs this file with KERAS_BACKEND=tensorflow in a torch-free environment (.venv-tf).
"""

from __future__ import annotations

import os

# The backend must be chosen before keras is imported: the one given, else torch (the harness's framework).
os.environ.setdefault("KERAS_BACKEND", "torch")

import csv  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from grda.keras import GRDA  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPES = [(6, 5), (7,), (2, 3, 4)]
MARGIN = 1e-4  # entries with | |a| - tau | below this may round either way in float32

# keras' torch backend converts tensors with np.array(x), which numpy 2 flags on torch tensors: noise.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

if keras.backend.backend() != os.environ["KERAS_BACKEND"]:
    pytest.skip(
        f"keras was imported earlier with the {keras.backend.backend()} backend, not {os.environ['KERAS_BACKEND']}",
        allow_module_level=True,
    )
BACKEND = keras.backend.backend()


def needs(*modules: str) -> None:
    """Skip the calling test where one of ``modules`` is not installed (e.g. torch in the TensorFlow run)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed here)")


# ---------------------------------------------------------------- independent float64 references


def np_soft_threshold(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


def closed_form_tau(n: int, lr: float, c: float, mu: float) -> float:
    return c * np.sqrt(lr) * (n * lr) ** mu


def assert_matches(got: np.ndarray, accumulator: np.ndarray, tau: float, atol: float) -> None:
    """got == S_tau(accumulator) to atol, with exact zeros wherever the reference is clearly zero."""
    ref = np_soft_threshold(accumulator, tau)
    np.testing.assert_allclose(got, ref, rtol=0, atol=atol)
    clear = np.abs(np.abs(accumulator) - tau) > MARGIN
    np.testing.assert_array_equal(got[clear] == 0, ref[clear] == 0)


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


# ---------------------------------------------------------------- checks (also run in a child process)


def check_closed_form(lr: float, c: float, mu: float, steps: int = 12, seed: int = 0) -> int:
    """optimizer.apply on several variables against the closed form after every step; returns #zeros."""
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(scale=0.5, size=s) for s in SHAPES]
    variables = [keras.Variable(w.astype("float32")) for w in w0]
    opt = GRDA(learning_rate=lr, c=c, mu=mu)
    grad_sums = [np.zeros(s) for s in SHAPES]
    for n in range(1, steps + 1):
        grads = [rng.normal(size=s) for s in SHAPES]
        opt.apply([keras.ops.convert_to_tensor(g.astype("float32")) for g in grads], variables)
        tau = closed_form_tau(n, lr, c, mu)
        for v, w, s, g in zip(variables, w0, grad_sums, grads):
            s += g
            assert_matches(to_numpy(v), w - lr * s, tau, atol=2e-6)
        assert int(keras.ops.convert_to_numpy(opt.iterations)) == n
        assert opt.threshold == pytest.approx(tau, rel=1e-6)
    tau = closed_form_tau(steps, lr, c, mu)
    return sum(int(np.sum(np_soft_threshold(w - lr * s, tau) == 0)) for w, s in zip(w0, grad_sums))


def check_fit_recurrence(lr: float = 0.05, c: float = 0.3, mu: float = 0.6, epochs: int = 3, seed: int = 1) -> None:
    """model.fit (linear regression, MSE) against a float64 NumPy gRDA recurrence with exact gradients.

    The optimizer is built, then the weights are replaced: the accumulator must start from the
    weights at the first update, not from those at build time.
    """
    rng = np.random.default_rng(seed)
    d, k, n_samples, batch = 4, 3, 12, 4
    x = rng.normal(size=(n_samples, d))
    t = rng.normal(size=(n_samples, k))
    w0 = [rng.normal(scale=0.5, size=(d, k)), rng.normal(scale=0.5, size=(k,))]

    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(k)])
    model.compile(optimizer=GRDA(learning_rate=lr, c=c, mu=mu), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.set_weights([w.astype("float32") for w in w0])
    model.fit(x.astype("float32"), t.astype("float32"), batch_size=batch, epochs=epochs, shuffle=False, verbose=0)

    acc = [w.copy() for w in w0]
    kernel, bias = w0
    tau, n = 0.0, 0
    for _ in range(epochs):
        for start in range(0, n_samples, batch):
            xb, tb = x[start : start + batch], t[start : start + batch]
            residual = 2.0 * (xb @ kernel + bias - tb) / (len(xb) * k)  # d(mean squared error)/d(output)
            grads = [xb.T @ residual, residual.sum(axis=0)]
            n += 1
            tau += c * lr ** (mu + 0.5) * (n**mu - (n - 1) ** mu)
            acc = [a - lr * g for a, g in zip(acc, grads)]
            kernel, bias = (np_soft_threshold(a, tau) for a in acc)
    assert tau == pytest.approx(closed_form_tau(n, lr, c, mu), rel=1e-12)
    assert model.optimizer.threshold == pytest.approx(tau, rel=1e-6)
    for got, a in zip(model.get_weights(), acc):
        assert_matches(np.asarray(got, dtype=np.float64), a, tau, atol=1e-5)
    assert any(np.sum(w == 0) for w in model.get_weights()), "the check should cover exact zeros"


def check_positive_zeros() -> int:
    """Half the accumulators negative and under the threshold: every pruned weight is +0.0, as in the PyTorch
    optimizer (a - clip(a, -tau, tau) is a - a = +0.0 there). Returns #zeros."""
    w0 = np.concatenate([-np.full(60, 0.01), np.full(60, 0.01), np.linspace(-1, 1, 21)]).astype("float32")
    v = keras.Variable(w0)
    opt = GRDA(learning_rate=0.1, c=1.0, mu=0.6)
    for _ in range(3):
        opt.apply([keras.ops.convert_to_tensor(np.full(w0.shape, 1e-3, "float32"))], [v])
    w = np.asarray(keras.ops.convert_to_numpy(v))
    assert (w == 0).sum() >= 120 and not np.signbit(w[w == 0]).any(), "a pruned weight is +0.0, never -0.0"
    return int((w == 0).sum())


def check_low_precision(dtype: str, steps: int = 20) -> str:
    """A bfloat16/float16 variable: its accumulator is float32 and equals the float64 sum of the start and the
    gradients the optimizer was given (within float32 rounding); the weight is the soft threshold of it in float32,
    rounded once to the variable's dtype, bit for bit. Returns the accumulator's dtype."""
    rng = np.random.default_rng(4)
    lr, c, mu = 0.01, 1.0, 0.6
    v = keras.Variable(rng.normal(scale=0.1, size=(40, 25)).astype("float32"), dtype=dtype)
    w0, total = to_numpy(v), np.zeros((40, 25))
    opt = GRDA(learning_rate=lr, c=c, mu=mu)
    for _ in range(steps):
        g = keras.ops.cast(rng.normal(size=(40, 25)).astype("float32"), dtype)
        total += to_numpy(g)
        opt.apply([g], [v])
    accumulator = opt._accumulators[0]
    assert keras.backend.standardize_dtype(v.dtype) == dtype
    np.testing.assert_allclose(to_numpy(accumulator), w0 - lr * total, rtol=0, atol=1e-6)  # bf16 would be ~1e-4 off
    a = keras.ops.convert_to_tensor(accumulator)
    tau = keras.ops.cast(opt._tau, "float32")
    want = keras.ops.cast(keras.ops.subtract(a, keras.ops.clip(a, -tau, tau)), dtype)
    got = to_numpy(v)
    np.testing.assert_array_equal(got, to_numpy(want))
    assert (got == 0).sum() > 0 and not np.signbit(got[got == 0]).any(), "exact zeros, all +0.0"
    return keras.backend.standardize_dtype(accumulator.dtype)


def regression_loss(dtype: str, **kwargs) -> float:
    """Issue 24's case, as tests/test_grda.py runs it on the PyTorch optimizer: a 64-weight linear regression, gRDA
    lr 2e-3, c 1e-4, mu 0.51, 300 steps, the gradients computed in ``dtype``; the mean squared error of the trained
    weights on the float32 data. In bfloat16 a weight near 0.05 has an ulp of 2.4e-4: an update lr * g under half of
    it (every gradient under 0.06) is rounded away unless the accumulator is wider."""
    ops = keras.ops
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype("float32")
    y = (x @ (0.05 * rng.normal(size=64)) + 0.1 * rng.normal(size=512)).astype("float32")
    w = keras.Variable((0.05 * rng.normal(size=64)).astype("float32"), dtype=dtype)
    opt = GRDA(learning_rate=2e-3, c=1e-4, mu=0.51, **kwargs)
    x_low, y_low, scale = ops.cast(x, dtype), ops.cast(y, dtype), ops.cast(2.0 / len(x), dtype)
    for _ in range(300):
        residual = ops.subtract(ops.matmul(x_low, w), y_low)
        opt.apply([ops.multiply(ops.matmul(residual, x_low), scale)], [w])  # d mean((x w - y)^2) / dw
    return float(np.mean((x.astype(np.float64) @ to_numpy(w) - y) ** 2))


# ---------------------------------------------------------------- (a) closed form


def test_pruned_weights_are_positive_zero():
    assert check_positive_zeros() >= 120


@pytest.mark.parametrize("lr, c, mu", [(0.1, 1.0, 0.51), (0.05, 2.0, 0.7), (0.5, 0.2, 0.55)])
def test_matches_closed_form(lr, c, mu):
    zeros = check_closed_form(lr, c, mu)
    assert zeros > 0, "parameters chosen so that the closed form has exact zeros"


def test_fit_matches_numpy_recurrence():
    check_fit_recurrence()


def test_first_update_starts_from_current_weights():
    """Built early, weights changed afterwards: a_0 is the value at the first update."""
    lr, c, mu = 0.1, 0.5, 0.6
    rng = np.random.default_rng(3)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
    opt = GRDA(learning_rate=lr, c=c, mu=mu)
    opt.build(variables)
    w0 = [rng.normal(size=s) for s in SHAPES]
    for v, w in zip(variables, w0):
        v.assign(w.astype("float32"))
    grads = [rng.normal(size=s) for s in SHAPES]
    opt.apply([g.astype("float32") for g in grads], variables)
    for v, w, g in zip(variables, w0, grads):
        assert_matches(to_numpy(v), w - lr * g, closed_form_tau(1, lr, c, mu), atol=1e-6)


def test_gradient_accumulation_counts_updates():
    check_gradient_accumulation()


def check_gradient_accumulation() -> None:
    """gradient_accumulation_steps=2: n counts real updates, each on the mean of two gradients."""
    lr, c, mu = 0.1, 0.5, 0.6
    rng = np.random.default_rng(7)
    w0 = [rng.normal(size=s) for s in SHAPES]
    variables = [keras.Variable(w.astype("float32")) for w in w0]
    opt = GRDA(learning_rate=lr, c=c, mu=mu, gradient_accumulation_steps=2)
    sums = [np.zeros(s) for s in SHAPES]
    for micro in range(1, 7):
        grads = [rng.normal(size=s) for s in SHAPES]
        opt.apply([g.astype("float32") for g in grads], variables)
        sums = [s + g / 2 for s, g in zip(sums, grads)]
        if micro % 2 == 0:
            tau = closed_form_tau(micro // 2, lr, c, mu)
            assert opt.threshold == pytest.approx(tau, rel=1e-6)
            for v, w, s in zip(variables, w0, sums):
                assert_matches(to_numpy(v), w - lr * s, tau, atol=2e-6)


@pytest.mark.slow
def test_harness_does_not_import_keras():
    needs("torch", "hydra")
    code = "import sys\nimport grda, src.optimizers, src.train\ngrda.GRDA\nassert 'keras' not in sys.modules\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr


def test_keras_extra_brings_no_torch():
    """grda[keras] is a torch-free install (make test-keras-tf installs it and checks); torch is the "torch" extra."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "src" / "optim" / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not any(r.startswith("torch") for r in project["dependencies"] + extras["keras"])
    assert extras["torch"] == ["torch>=2.4,<3"]


def test_threshold_is_kahan_summed():
    """tau after many steps (float32 state) stays within float32 rounding of the closed form."""
    lr, c, mu = 0.005, 0.005, 0.51
    opt = GRDA(learning_rate=lr, c=c, mu=mu)
    v = keras.Variable(np.zeros(1, "float32"))
    opt.build([v])
    opt.iterations.assign(100_000)  # step counts as late in a long run
    opt._tau.assign(closed_form_tau(100_000, lr, c, mu))
    for _ in range(2000):
        tau, comp = opt._advance_threshold(keras.ops.convert_to_tensor(lr))
        opt._tau.assign(tau)
        opt._tau_compensation.assign(comp)
        opt.iterations.assign_add(1)
    assert opt.threshold == pytest.approx(closed_form_tau(102_000, lr, c, mu), rel=3e-7)


# ---------------------------------------------------------------- (a') bfloat16 and float16 variables


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_variables_accumulate_in_float32(dtype):
    assert check_low_precision(dtype) == "float32"


@pytest.fixture(scope="module")
def fp32_regression_loss() -> float:
    return regression_loss("float32")


def test_bf16_variables_train_like_fp32(fp32_regression_loss):
    """bfloat16 variables with the default float32 accumulator reach the float32 loss (within 20 %)."""
    loss = regression_loss("bfloat16")
    assert loss <= 1.2 * fp32_regression_loss, (loss, fp32_regression_loss)


def test_param_dtype_accumulator_loses_small_updates(fp32_regression_loss):
    """accumulator_dtype="param" (the rule before) keeps the documented risk: the updates under half an ulp are lost."""
    loss = regression_loss("bfloat16", accumulator_dtype="param")
    assert loss > 1.2 * fp32_regression_loss, (loss, fp32_regression_loss)


def test_accumulator_dtypes():
    from grda.keras import accumulator_dtype

    for variable, option, want in [
        ("bfloat16", "fp32", "float32"),
        ("float16", "fp32", "float32"),
        ("float32", "fp32", "float32"),
        ("float64", "fp32", "float64"),
        ("bfloat16", "param", "bfloat16"),
        ("float16", "param", "float16"),
    ]:
        assert accumulator_dtype(variable, option) == want, (variable, option)
    v = keras.Variable(np.ones(3, "float32"), dtype="bfloat16")
    opt = GRDA(accumulator_dtype="param")
    opt.build([v])
    assert keras.backend.standardize_dtype(opt._accumulators[0].dtype) == "bfloat16"


def test_bf16_model_state_survives_save_and_load(tmp_path):
    """A bfloat16 model: float32 accumulators are saved and loaded as float32, and training resumes identically."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="tanh", dtype="bfloat16"),
            keras.layers.Dense(3, dtype="bfloat16"),
        ]
    )
    model.compile(optimizer=GRDA(learning_rate=0.05, c=0.3, mu=0.6), loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for opt in (model.optimizer, loaded.optimizer):
        assert [keras.backend.standardize_dtype(a.dtype) for a in opt._accumulators] == ["float32"] * 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for m in (model, loaded):
        m.train_on_batch(x[:4], y[:4])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- (b) against the PyTorch optimizer


@pytest.mark.parametrize("lr_change", ["assign", "schedule"])
def test_matches_pytorch_grda_with_lr_change(lr_change):
    needs("torch")
    import torch

    from grda import GRDA as TorchGRDA

    lr1, lr2, switch, steps, c, mu = 0.1, 0.03, 7, 15, 0.5, 0.6
    rng = np.random.default_rng(4)
    w0 = [rng.normal(scale=0.5, size=s).astype("float32") for s in SHAPES]
    grads = [[rng.normal(size=s).astype("float32") for s in SHAPES] for _ in range(steps)]

    params = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    torch_opt = TorchGRDA(params, lr=lr1, c=c, mu=mu)
    variables = [keras.Variable(w) for w in w0]
    if lr_change == "schedule":  # the schedule sees iterations = n - 1 at the n-th update
        lr = keras.optimizers.schedules.PiecewiseConstantDecay([switch - 1], [lr1, lr2])
    else:
        lr = lr1
    keras_opt = GRDA(learning_rate=lr, c=c, mu=mu)

    zeros = 0
    for n, step_grads in enumerate(grads, start=1):
        if n == switch + 1:
            torch_opt.param_groups[0]["lr"] = lr2
            if lr_change == "assign":
                keras_opt.learning_rate = lr2
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        torch_opt.step()
        keras_opt.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
        assert keras_opt.threshold == pytest.approx(torch_opt.thresholds()[0], rel=1e-6)
        for v, p in zip(variables, params):
            got, want = to_numpy(v), p.detach().double().numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            accumulator = torch_opt.state[p]["accumulator"].double().numpy()
            clear = np.abs(np.abs(accumulator) - torch_opt.thresholds()[0]) > MARGIN
            np.testing.assert_array_equal(got[clear] == 0, want[clear] == 0)
            zeros += int(np.sum(want == 0))
    assert zeros > 0
    # tau kept what it had accumulated at lr1 and grew at lr2 afterwards (not the closed form at lr2)
    kept = closed_form_tau(switch, lr1, c, mu) + c * lr2 ** (mu + 0.5) * (steps**mu - switch**mu)
    assert keras_opt.threshold == pytest.approx(kept, rel=1e-6)


# ---------------------------------------------------------------- (c) c = 0 is SGD


def _regression_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])


def test_c_zero_equals_sgd():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 5)).astype("float32")
    y = rng.normal(size=(20, 3)).astype("float32")
    models = []
    for opt in (GRDA(learning_rate=0.05, c=0.0, mu=0.7), keras.optimizers.SGD(learning_rate=0.05)):
        model = _regression_model()
        model.compile(optimizer=opt, loss="mse")
        model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
        models.append(model)
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert models[0].optimizer.threshold == 0.0


# ---------------------------------------------------------------- (d) save / load_model


@pytest.mark.parametrize(
    "start",
    [{}, dict(accumulator_init="uniform", accumulator_range=0.2, accumulator_seed=5)],
    ids=["weights", "uniform"],
)
def test_state_survives_save_and_load(tmp_path, start):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.normal(size=(16, 3)).astype("float32")
    model = _regression_model(1)
    model.compile(optimizer=GRDA(learning_rate=0.05, c=0.3, mu=0.6, **start), loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert any(np.sum(w == 0) for w in model.get_weights()), "the check should cover exact zeros"

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    opt, loaded_opt = model.optimizer, loaded.optimizer
    assert isinstance(loaded_opt, GRDA)
    assert (loaded_opt.c, loaded_opt.mu) == (0.3, 0.6)
    assert {k: getattr(loaded_opt, k) for k in start} == start
    assert len(loaded_opt.variables) == len(opt.variables) == 2 + 4 + 2  # iteration, lr, 4 accumulators, tau pair
    assert [v.name for v in loaded_opt.variables][-2:] == ["tau", "tau_compensation"]
    for a, b in zip(opt.variables, loaded_opt.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert int(keras.ops.convert_to_numpy(loaded_opt.iterations)) == 8
    assert loaded_opt.threshold == opt.threshold > 0

    # A fresh optimizer on the same weights restarts tau and the accumulators: a different run.
    fresh = keras.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    fresh.compile(optimizer=GRDA(learning_rate=0.05, c=0.3, mu=0.6, **start), loss="mse")
    for start in range(0, 16, 4):
        for m in (model, loaded, fresh):
            m.train_on_batch(x[start : start + 4], y[start : start + 4])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))


# ---------------------------------------------------------------- (e) validation and config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0.0}, "learning rate must be > 0"),
        ({"learning_rate": -0.1}, "learning rate must be > 0"),
        ({"learning_rate": float("nan")}, "finite"),
        ({"c": -0.01}, "c must be >= 0"),
        ({"c": float("inf")}, "finite"),
        ({"c": "0.1"}, "must be a number"),
        ({"mu": 0.0}, "mu must be > 0"),
        ({"mu": -0.5}, "mu must be > 0"),
        ({"mu": True}, "must be a number"),
        ({"weight_decay": 1e-4}, "weight_decay"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRDA(**kwargs)


@pytest.mark.parametrize("mu", [0.3, 0.5, 1.0, 1.5])
def test_mu_outside_theory_warns(mu):
    with pytest.warns(UserWarning, match=r"outside \(0.5, 1\)"):
        GRDA(mu=mu)


def test_mu_warning_points_at_the_caller():
    with pytest.warns(UserWarning, match="outside") as record:
        GRDA(mu=1.0)
    assert record[0].filename == __file__


def test_recommended_settings_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mu in (0.501, 0.51, 0.55, 0.7):
            GRDA(learning_rate=0.005, c=0.005, mu=mu)
        GRDA(learning_rate=1, c=0, mu=0.51)  # ints and c = 0 are fine


def test_config_round_trip():
    opt = GRDA(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5), c=0.002, mu=0.55, clipnorm=1.0)
    config = opt.get_config()
    assert (config["c"], config["mu"], config["name"]) == (0.002, 0.55, "grda")
    assert keras.saving.get_registered_name(GRDA) == "grda>GRDA"
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is GRDA
    assert (again.c, again.mu, again.clipnorm) == (0.002, 0.55, 1.0)
    assert isinstance(again._learning_rate, keras.optimizers.schedules.ExponentialDecay)
    from grda import defaults

    assert GRDA().get_config()["learning_rate"] == pytest.approx(defaults.LR)
    assert (GRDA().c, GRDA().mu) == (defaults.C, defaults.MU)


# ---------------------------------------------------------------- other backends, in a child process


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow", "torch"])
def test_other_backend(backend):
    if backend == BACKEND:
        pytest.skip(f"this process runs on {backend}")
    needs(backend)
    code = (
        "from tests import test_grda_keras as t\n"
        "assert t.keras.backend.backend() == t.os.environ['KERAS_BACKEND']\n"
        "assert t.check_closed_form(0.1, 1.0, 0.51) > 0\n"
        "t.check_fit_recurrence()\n"
        "t.check_gradient_accumulation()\n"
        "assert t.check_low_precision('bfloat16') == 'float32'\n"
        "assert t.check_positive_zeros() >= 120\n"
        "print('ok', t.keras.backend.backend())\n"
    )
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ok {backend}" in proc.stdout


# ---------------------------------------------------------------- scripts/analysis/keras_cifar10_cnn.py


def make_png_folder(root: Path, n_train: int, n_test: int) -> None:
    """root/{train,test}/{cat,dog,frog}/NNNN.png, random 32x32 RGB (tests.fakedata's layout, without torch)."""
    needs("PIL")
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("cat", "dog", "frog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:04d}.png")


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "keras_cifar10_cnn", REPO / "scripts" / "analysis" / "keras_cifar10_cnn.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar10_script_one_epoch(tmp_path, capsys):
    if importlib.util.find_spec("grain") is None and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("keras.utils.image_dataset_from_directory needs grain or tensorflow")
    make_png_folder(tmp_path / "cifar", n_train=4, n_test=2)  # 3 classes of 32x32 PNGs
    out = tmp_path / "log.csv"
    script = _load_script()
    rc = script.main(
        [
            "--data-root",
            str(tmp_path / "cifar"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--train-subset",
            "9",
            "--c",
            "0.05",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["epoch", "test_acc", "nonzero_ratio"]
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert 0.0 <= float(rows[0]["test_acc"]) <= 1.0
    assert 0.0 < float(rows[0]["nonzero_ratio"]) < 1.0  # c = 0.05: some exact zeros after 3 steps
    assert rows[0]["steps"] == "3"  # 9 of the 12 training images, batch 4
    assert float(rows[0]["threshold"]) == pytest.approx(closed_form_tau(3, 0.005, 0.05, 0.51), rel=1e-6)
    printed = capsys.readouterr().out
    assert "9 train / 6 test images, 3 classes" in printed and "epoch 1: test_acc" in printed


def test_cifar10_script_keras_baseline_with_softmax_output(tmp_path, capsys):
    """--optimizer adam --output softmax: Keras' own Adam on the authors' softmax + clipped cross-entropy."""
    if importlib.util.find_spec("grain") is None and importlib.util.find_spec("tensorflow") is None:
        pytest.skip("keras.utils.image_dataset_from_directory needs grain or tensorflow")
    make_png_folder(tmp_path / "cifar", n_train=4, n_test=2)
    out = tmp_path / "log.csv"
    script = _load_script()
    rc = script.main(
        [
            "--data-root",
            str(tmp_path / "cifar"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--output",
            "softmax",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with out.open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["threshold"] == ""  # no threshold outside gRDA
    assert float(row["lr"]) == pytest.approx(0.01) and row["steps"] == "3"
    assert "keras Adam lr=0.01, softmax output" in capsys.readouterr().out
    model = script.build_model(3, "softmax")
    probs = keras.ops.convert_to_numpy(model(np.zeros((2, 32, 32, 3), np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_cifar10_script_missing_data_root(tmp_path, capsys):
    rc = _load_script().main(["--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- accumulator_init="uniform"


def test_uniform_start_matches_closed_form():
    """a_0 drawn as documented (numpy PCG64, seed + variable index), never the variables' own values."""
    lr, c, mu, bound, seed, steps = 0.05, 0.4, 0.6, 0.1, 5, 8
    rng = np.random.default_rng(3)
    variables = [keras.Variable(rng.normal(scale=5.0, size=s).astype("float32")) for s in SHAPES]
    opt = GRDA(learning_rate=lr, c=c, mu=mu, accumulator_init="uniform", accumulator_range=bound, accumulator_seed=seed)
    starts = [
        (2 * np.random.default_rng(seed + i).random(s, dtype=np.float32) - 1).astype(np.float64) * bound
        for i, s in enumerate(SHAPES)
    ]
    sums = [np.zeros(s) for s in SHAPES]
    for n in range(1, steps + 1):
        grads = [rng.normal(scale=0.1, size=s) for s in SHAPES]
        opt.apply([keras.ops.convert_to_tensor(g.astype("float32")) for g in grads], variables)
        for v, a0, total, g in zip(variables, starts, sums, grads):
            total += g
            assert_matches(to_numpy(v), a0 - lr * total, closed_form_tau(n, lr, c, mu), atol=2e-6)
    assert all(np.any(to_numpy(v) == 0) for v in variables), "the case must produce exact zeros"


def test_uniform_start_in_config_and_validated():
    opt = GRDA(accumulator_init="uniform", accumulator_range=0.2, accumulator_seed=9)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert (again.accumulator_init, again.accumulator_range, again.accumulator_seed) == ("uniform", 0.2, 9)
    assert again.accumulator_dtype == "fp32"
    param = keras.optimizers.deserialize(keras.optimizers.serialize(GRDA(accumulator_dtype="param")))
    assert param.accumulator_dtype == "param"
    for kwargs in (
        dict(accumulator_init="normal"),
        dict(accumulator_range=0),
        dict(accumulator_seed=-2),
        dict(accumulator_dtype="bf16"),
    ):
        with pytest.raises(ValueError, match="accumulator_"):
            GRDA(**kwargs)
