r"""gRDA for Keras 3 (TensorFlow, JAX and PyTorch backends), the rule of :class:`grda.GRDA`.

Generalized regularized dual averaging (Chao, Wang, Xing & Cheng, "Directional Pruning of Deep
Neural Networks", NeurIPS 2020) as a ``keras.optimizers.Optimizer`` written with ``keras.ops`` only,
so one class serves every Keras 3 backend. It replaces the authors' Keras 2, TF1-contrib and PlaidML
versions, whose APIs are gone (and whose PlaidML soft threshold is wrong for ``|x| < t``).

This module imports neither torch nor anything else of the package that would (``import grda`` is
lazy), so it runs on the JAX or TensorFlow backend in an environment without PyTorch.

Usage::

    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")   # or "torch" / "tensorflow"
    import keras
    from grda.keras import GRDA

    model.compile(optimizer=GRDA(learning_rate=0.005, c=0.005, mu=0.51),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=10, epochs=...)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from grda import defaults
from grda._validation import check_accumulator_start, check_c_mu, check_lr, is_number

__all__ = ["GRDA", "accumulator_dtype"]

# "fp32": bfloat16/float16 variables keep a float32 accumulator (wider dtypes keep their own); "param": the
# variable's dtype. The names of the PyTorch optimizer's option (grda.GRDA(accumulator_dtype=...)).
ACCUMULATOR_DTYPES = ("fp32", "param")


@keras.saving.register_keras_serializable(package="grda")
class GRDA(keras.optimizers.Optimizer):
    r"""Generalized regularized dual averaging: trains a dense network and ends with a sparse one.

    For every trainable variable :math:`w` it keeps an accumulator :math:`a` that starts as the
    variable's value at the first update, :math:`a_0 = w_0` (``accumulator_init="uniform"`` draws it
    from :math:`U(-r, r)` instead, the authors' rule for their CIFAR-10 CNN figure). At the :math:`n`-th update
    (:math:`n` = ``iterations + 1``), with learning rate :math:`\gamma` and gradient :math:`g_n`:

    .. math::
        a_n    &= a_{n-1} - \gamma\, g_n \\
        \tau_n &= \tau_{n-1} + c\,\gamma^{\mu + 1/2}\,\bigl(n^\mu - (n-1)^\mu\bigr), \qquad \tau_0 = 0 \\
        w_n    &= S_{\tau_n}(a_n) = \mathrm{sign}(a_n)\,\max(|a_n| - \tau_n,\ 0)

    With a constant learning rate, :math:`\tau_n = c\sqrt{\gamma}\,(n\gamma)^\mu` (the paper's
    closed form) and :math:`w_n = S_{\tau_n}(w_0 - \gamma\sum_k g_k)`. With a
    ``keras.optimizers.schedules.LearningRateSchedule`` (or after assigning
    ``optimizer.learning_rate``), :math:`\tau` keeps what it has accumulated and grows at the
    current rate: the behaviour of the PyTorch optimizer under a scheduler. Entries whose
    accumulator lies within :math:`[-\tau, \tau]` are exactly zero. ``c = 0`` is plain SGD.

    Args:
        learning_rate: :math:`\gamma` (> 0): a float, a ``LearningRateSchedule`` or a callable.
            Use what works for SGD *without* momentum on the same model.
        c: threshold scale (>= 0); the paper uses :math:`0 < c \le 0.005`. Larger is sparser.
        mu: threshold growth exponent (> 0). The theory covers :math:`0.5 < \mu < 1` (the
            authors recommend 0.501, 0.51 or 0.55); other values warn. Larger is sparser.
        accumulator_init: ``"weights"`` (default, :math:`a_0 = w_0`) or ``"uniform"``
            (:math:`a_0 \sim U(-r, r)` for every variable, biases included: the authors' Keras
            optimizer at the time of their CIFAR-10 CNN figure), as in the PyTorch optimizer.
        accumulator_range: :math:`r` (> 0) for ``"uniform"``; the authors used 0.1.
        accumulator_seed: seed of the ``"uniform"`` draw: variable :math:`i` of the optimizer's
            list draws ``(2 * numpy.random.default_rng(seed + i).random(shape, float32) - 1) * r``
            (the same on every backend; another stream than the PyTorch optimizer's).
        accumulator_dtype: the dtype of the accumulators of bfloat16 and float16 variables, as in the
            PyTorch optimizer. ``"fp32"`` (default): float32; the update and the soft threshold are
            computed in float32 and rounded into the variable once per step, so a low-precision model
            trains like its float32 twin. ``"param"``: the variable's own dtype, for half the state
            memory, at a risk: an update :math:`\gamma g` under half an ulp of the accumulator is
            rounded away (bfloat16 next to 0.05: one ulp is 2.4e-4, so at :math:`\gamma` = 2e-3 every
            gradient under 0.06 is lost). float32 and float64 variables always keep their own dtype.
        name: optimizer name.
        **kwargs: the common Keras optimizer arguments (``clipnorm``, ``clipvalue``,
            ``global_clipnorm``, ``use_ema``, ``loss_scale_factor``,
            ``gradient_accumulation_steps``, ...). ``weight_decay`` is refused: gRDA recomputes
            the weights from the accumulator at every step, so decayed weights would be
            overwritten (the :math:`\ell_1` threshold ``c`` is gRDA's regularizer).

    State (saved by ``model.save`` and restored by ``keras.models.load_model``): ``iterations``,
    one accumulator per trainable variable (float32 for a bfloat16/float16 variable unless
    ``accumulator_dtype="param"``), and the scalar threshold ``tau``. A second scalar,
    ``tau_compensation``, carries the rounding error of the float32 running sum of ``tau``
    (Kahan summation); without it ``tau`` drifts by ~0.1 % over the authors' 500 000-step CIFAR-10
    run. The increment :math:`n^\mu - (n-1)^\mu` is evaluated as
    :math:`-n^\mu\,\mathrm{expm1}(\mu\,\mathrm{log1p}(-1/n))`, free of cancellation.

    Differences from the PyTorch optimizer: the step count :math:`n` and :math:`\tau` are global
    (the optimizer's), not per variable, so a variable that gets no gradient at some step still
    sees :math:`\tau` grow (the PyTorch one skips it). Accumulators are also seeded with the
    variables' values when the optimizer is built, so a variable whose first gradient arrives
    after the first step starts from its value at build time.
    """

    def __init__(
        self,
        learning_rate=defaults.LR,
        c=defaults.C,
        mu=defaults.MU,
        accumulator_init="weights",
        accumulator_range=0.1,
        accumulator_seed=123,
        accumulator_dtype="fp32",
        name="grda",
        **kwargs,
    ):
        if kwargs.get("weight_decay") is not None:
            raise ValueError(
                "GRDA does not support weight_decay: the weights are recomputed from the "
                "accumulator at every step. Its regularizer is the soft threshold; raise c instead."
            )
        if is_number(learning_rate):  # else a schedule, which Keras checks
            check_lr(learning_rate, name="learning_rate")
            learning_rate = float(learning_rate)  # Keras wants a float, not an int
        check_c_mu(c, mu)
        check_accumulator_start(accumulator_init, accumulator_range, accumulator_seed)
        if accumulator_dtype not in ACCUMULATOR_DTYPES:
            raise ValueError(f"GRDA accumulator_dtype must be one of {ACCUMULATOR_DTYPES}, got {accumulator_dtype!r}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.c = float(c)
        self.mu = float(mu)
        self.accumulator_init = accumulator_init
        self.accumulator_range = float(accumulator_range)
        self.accumulator_seed = int(accumulator_seed)
        self.accumulator_dtype = accumulator_dtype
        self._step_tau = None  # tau of the update in progress, shared by its update_step calls

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Seeded with the current values; the first update overwrites them with the values
        # at that moment (build can happen earlier: model.fit's symbolic build, load_model).
        self._accumulators = [
            None if self._overwrite_variable_with_gradient(v) else self._add_accumulator(v, i)
            for i, v in enumerate(var_list)
        ]
        self._tau = self.add_variable((), initializer="zeros", name="tau", aggregation="only_first_replica")
        self._tau_compensation = self.add_variable(
            (), initializer="zeros", name="tau_compensation", aggregation="only_first_replica"
        )

    def _add_accumulator(self, variable, index):
        dtype = accumulator_dtype(variable.dtype, self.accumulator_dtype)
        initializer = self._start(variable, index)
        if dtype == keras.backend.standardize_dtype(variable.dtype):
            return self.add_variable_from_reference(variable, name="accumulator", initializer=initializer)
        # add_variable_from_reference in another dtype: its name and layout (and, on TensorFlow, its placement)
        path = getattr(variable, "path", None) or str(variable.name).replace(":", "_")
        name = f"{path.replace('/', '_')}_accumulator"

        def add():
            return self.add_variable(
                shape=variable.shape,
                initializer=initializer,
                dtype=dtype,
                name=name,
                layout=getattr(variable, "_layout", None),
            )

        strategy = getattr(self, "_distribution_strategy", None)  # the TensorFlow backend's optimizer has one
        if strategy is None:
            return add()
        with strategy.extended.colocate_vars_with(variable.value):
            return add()

    def _start(self, variable, index):
        if self.accumulator_init == "uniform":
            return _uniform(self.accumulator_range, self.accumulator_seed + index)
        return _copy_of(variable)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Once per update (every backend routes through here): advance tau, update all
        # variables with the new tau, then store it.
        tau, compensation = self._advance_threshold(learning_rate)
        self._step_tau = tau
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        self._step_tau = None
        self.assign(self._tau, tau)
        self.assign(self._tau_compensation, compensation)

    def _advance_threshold(self, learning_rate):
        """(tau_n, compensation_n) from the stored pair: Kahan-summed increment at the current lr."""
        dtype = self._tau.dtype
        lr = ops.cast(learning_rate, dtype)
        n = ops.cast(self.iterations + 1, dtype)
        # n^mu - (n-1)^mu without cancellation (n = 1 gives exactly 1: expm1(-inf) = -1).
        growth = -ops.power(n, self.mu) * ops.expm1(self.mu * ops.log1p(ops.divide(-1.0, n)))
        increment = self.c * ops.power(lr, self.mu + 0.5) * growth
        previous = ops.convert_to_tensor(self._tau)
        y = increment - ops.convert_to_tensor(self._tau_compensation)
        tau = previous + y
        compensation = (tau - previous) - y
        return tau, compensation

    def update_step(self, gradient, variable, learning_rate):
        accumulator = self._accumulators[self._get_variable_index(variable)]
        dtype = accumulator.dtype  # float32 for a bfloat16/float16 variable, unless accumulator_dtype="param"
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.accumulator_init == "uniform":  # a_0 was drawn at build time
            previous = ops.convert_to_tensor(accumulator)
        else:  # a_0 = w_0: the variable's value at the first update (a scalar branch, not an elementwise select).
            previous = ops.cond(
                ops.equal(self.iterations, 0),
                lambda: ops.cast(variable, dtype),
                lambda: ops.convert_to_tensor(accumulator),
            )
        a = ops.subtract(previous, ops.multiply(lr, gradient))
        self.assign(accumulator, a)
        # S_tau(a) = sign(a) max(|a| - tau, 0), computed as a - clip(a, -tau, tau): the same values
        # (a - tau, a + tau or exactly 0) in two elementwise passes instead of five. Zeros come out
        # as +0.0 (x - x is +0.0 when rounding to nearest), like the PyTorch optimizer's. Computed in the
        # accumulator's dtype, rounded once to the variable's.
        tau = ops.cast(self._step_tau, dtype)
        self.assign(variable, ops.cast(ops.subtract(a, ops.clip(a, ops.negative(tau), tau)), variable.dtype))

    @property
    def threshold(self):
        """The current soft threshold tau (0 before the first update)."""
        if not self.built:
            return 0.0
        return float(ops.convert_to_numpy(self._tau))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "c": self.c,
                "mu": self.mu,
                "accumulator_init": self.accumulator_init,
                "accumulator_range": self.accumulator_range,
                "accumulator_seed": self.accumulator_seed,
                "accumulator_dtype": self.accumulator_dtype,
            }
        )
        return config


def accumulator_dtype(variable_dtype, option="fp32"):
    """The dtype (a Keras dtype name) of a variable's accumulator: float32 for a floating-point variable narrower
    than 32 bits (bfloat16, float16, float8) under ``option="fp32"``; otherwise the variable's own."""
    dtype = keras.backend.standardize_dtype(variable_dtype)
    if option == "fp32" and (dtype in ("bfloat16", "float16") or dtype.startswith("float8")):
        return "float32"
    return dtype


def _copy_of(variable):
    def initializer(shape, dtype=None):
        return ops.cast(ops.copy(variable.value), dtype or variable.dtype)

    return initializer


def _uniform(bound, seed):
    def initializer(shape, dtype=None):
        draw = (2 * np.random.default_rng(seed).random(tuple(shape), dtype=np.float32) - 1) * np.float32(bound)
        return ops.cast(draw, dtype or "float32")

    return initializer
