"""Optimizers: gRDA and the paper's baselines, built from the ``optim`` config group."""

from src.optim.grda import GRDA

__all__ = ["GRDA"]
