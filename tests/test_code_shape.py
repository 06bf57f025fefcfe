"""The code stays easy to read as it grows: no function over 80 lines in src/ or scripts/, and src/train.py reads
top-down in at most 400 lines (issue 25). The linter (ruff, `make lint`) guards the rest."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

MAX_FUNCTION_LINES = 80
MAX_ENTRYPOINT_LINES = 400


def long_functions(source: str, limit: int) -> list:
    """(name, first line, length) of every function or method in ``source`` longer than ``limit`` lines."""
    return [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


def test_long_functions_are_found():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def short():\n    pass\n\ndef long():\n{body}\n", MAX_FUNCTION_LINES) == [
        ("long", 4, MAX_FUNCTION_LINES + 1)
    ]


def test_no_function_over_80_lines():
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "scripts").rglob("*.py"))
    assert len(files) > 50
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
        for path in files
        for name, line, length in long_functions(path.read_text(), MAX_FUNCTION_LINES)
    ]
    assert not offenders, "split these into named steps: " + "; ".join(offenders)


def test_training_entrypoint_stays_short():
    lines = (ROOT / "src" / "train.py").read_text().count("\n")
    assert lines <= MAX_ENTRYPOINT_LINES, f"src/train.py has {lines} lines: move a concern into its own module"
