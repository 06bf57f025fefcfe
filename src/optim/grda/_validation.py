"""Checks of gRDA's hyperparameters, shared by the PyTorch and the Keras optimizer.

Pure Python (no torch, no keras), so that either optimizer imports it without the other's framework. Every check
raises ValueError with one line naming the setting, its value and the allowed range.
"""

from __future__ import annotations

import math
import numbers
import warnings

ACCUMULATOR_INITS = ("weights", "uniform")


def is_number(value) -> bool:
    """A real number that is not a bool (numpy scalars count; tensors and strings do not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_accumulator_start(init, bound, seed) -> None:
    if init not in ACCUMULATOR_INITS:
        raise ValueError(f"GRDA accumulator_init must be one of {ACCUMULATOR_INITS}, got {init!r}")
    if not is_number(bound) or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"GRDA accumulator_range must be a finite number > 0, got {bound!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"GRDA accumulator_seed must be an integer >= 0, got {seed!r}")


def check_lr(lr, name: str = "lr") -> None:
    """A numeric learning rate must be finite and > 0 (``name`` is the argument as the caller spells it)."""
    if not is_number(lr):
        raise ValueError(f"GRDA {name} must be a number, got {lr!r}")
    if not math.isfinite(lr):
        raise ValueError(f"GRDA {name} must be finite, got {name}={lr}")
    if lr <= 0:
        raise ValueError(f"GRDA learning rate must be > 0, got {name}={lr}")


def check_c_mu(c, mu, stacklevel: int = 2) -> None:
    """c >= 0 and mu > 0, both finite numbers; mu outside (0.5, 1) warns (``stacklevel`` counts from the caller)."""
    for name, value in (("c", c), ("mu", mu)):
        if not is_number(value):
            raise ValueError(f"GRDA {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"GRDA {name} must be finite, got {name}={value}")
    if c < 0:
        raise ValueError(f"GRDA c must be >= 0 (0 is plain SGD), got c={c}")
    if mu <= 0:
        raise ValueError(f"GRDA mu must be > 0, got mu={mu}")
    if not 0.5 < mu < 1:
        warnings.warn(
            f"GRDA mu={mu} is outside (0.5, 1), the range its theory covers; "
            "the authors recommend mu in {0.501, 0.51, 0.55}",
            stacklevel=stacklevel + 1,
        )
