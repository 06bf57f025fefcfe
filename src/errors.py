"""Errors meant for people: one line saying what is wrong and how to fix it."""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


class UserError(Exception):
    """A problem with the user's input (config value, path, file) rather than a bug.

    Entry points catch it, print ``error: <message>`` as one line on stderr and exit
    with status 2 without a traceback (:func:`cli_main` does it for them).
    """


class DataError(UserError):
    """A dataset is missing, empty, laid out wrongly or holds a corrupt file."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, not a checkpoint, or does not fit the model."""


def cli_main(run: Callable[[Optional[Sequence[str]]], Optional[int]], argv: Optional[Sequence[str]] = None) -> int:
    """A command line's exit status: ``run(argv)``'s (0 when it returns None); 2 after a :class:`UserError`.

    The error is printed as ``error: <message>``, one line on stderr, without a traceback; any other exception
    propagates (a bug). ``main(argv=None)`` of an entry point is then ``return cli_main(_main, argv)``.
    """
    try:
        status = run(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)
