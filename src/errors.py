"""Errors meant for people: one line saying what is wrong and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (config value, path, file) rather than a bug.

    Entry points catch it, print ``error: <message>`` as one line on stderr and exit
    with status 2 without a traceback.
    """


class DataError(UserError):
    """A dataset is missing, empty, laid out wrongly or holds a corrupt file."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, not a checkpoint, or does not fit the model."""
