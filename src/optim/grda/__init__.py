r"""gRDA: generalized regularized dual averaging, the optimizer of "Directional Pruning of Deep Neural Networks"
(Chao, Wang, Xing & Cheng, NeurIPS 2020). It trains a dense network and ends with a sparse one.

    from grda import GRDA
    opt = GRDA(model.parameters(), lr=0.005, c=0.005, mu=0.51)

Importing ``grda`` imports nothing heavy: the names below load their modules (and torch) on first use, so
``grda.keras`` (the Keras 3 optimizer) works where PyTorch is not installed. Integrations, each importing its
framework only when imported: ``grda.timm`` (timm's optimizer factory), ``grda.lightning`` (a sparsity
callback for Lightning), ``grda.keras``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from grda import defaults
from grda._version import __version__

_LAZY = {
    "GRDA": "grda.optimizer",
    "threshold_increment": "grda.optimizer",
    "closed_form_threshold": "grda.optimizer",
    "soft_threshold": "grda.optimizer",
    "uniform_accumulator": "grda.optimizer",
    "sparsity": "grda.stats",
    "global_sparsity": "grda.stats",
    "layer_sparsity": "grda.stats",
    "zero_counts": "grda.stats",
}

__all__ = ["__version__", "defaults", *_LAZY]

if TYPE_CHECKING:  # what static tools see; at run time the names load lazily
    from grda.optimizer import (  # noqa: F401
        GRDA,
        closed_form_threshold,
        soft_threshold,
        threshold_increment,
        uniform_accumulator,
    )
    from grda.stats import global_sparsity, layer_sparsity, sparsity, zero_counts  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'grda' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
