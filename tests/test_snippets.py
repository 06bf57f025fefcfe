"""Every ```python snippet of README.md and docs/ runs as written (tests/snippets.py says how).

Each runs in its own process, in a temporary folder, with tiny stand-ins for the reader's ``model``, ``loader``,
``loss_fn``, ``ds``, ``x`` and ``y`` where the snippet uses them without defining them. A snippet that imports a
package not installed here is skipped, with the package named. Identical snippets (the README and the site share
some) run once.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.snippets import ROOT, all_snippets, imported_modules

SNIPPETS = {}
for _snippet in all_snippets():
    SNIPPETS.setdefault(_snippet.code, _snippet)  # the first place it appears


def test_snippets_are_found():
    labels = [s.label for s in SNIPPETS.values()]
    assert any(label.startswith("README.md") for label in labels)
    assert sum(label.startswith("docs/") for label in labels) >= 5, labels


@pytest.mark.slow
@pytest.mark.parametrize("snippet", list(SNIPPETS.values()), ids=lambda s: s.label)
def test_snippet_runs(snippet, tmp_path):
    missing = [m for m in imported_modules(snippet.code) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{snippet.label} needs {', '.join(missing)}, not installed here")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",
    }
    code = tmp_path / "snippet.py"
    code.write_text(snippet.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "tests.snippets", snippet.path, str(snippet.line), str(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{snippet.label} fails as written:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
