"""No machine paths in the repository: commands in results/ name placeholders or relative paths, scripts take other
clones from an argument or an environment variable, test data carry placeholder roots.

Every text file git tracks (and every new one it does not ignore) is scanned for an absolute path under the root,
work or tmp directories or under a user's home directory (Linux or macOS): such a path names one machine, and reads as
a path nobody else has. ALLOWED lists the few lines that must spell such a path out, each with its reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

# An absolute path that starts a word (not inside a URL or a relative path such as src/tmp/x), e.g. the root user's
# home, a run folder under the work directory, a temp file, a user's home directory.
MACHINE_PATH = re.compile(r"(?<![\w.~$/-])/(?:(?:root|work|tmp)(?![\w.-])|(?:home|Users)/[\w.-]+)")

# (file, a substring of the line, why that line may name such a path). Keep this short.
ALLOWED = [
    (
        "tests/test_authors_data.py",
        'not in text and ".mirror" not in text',
        "asserts that the authors' curves hold no path under the work directory",
    ),
    (
        "tests/test_authors_data.py",
        'not in (ROOT / "scripts" / "authors" / "authors_wrn_curves.py")',
        "asserts that the authors' curves script holds no path under the work directory",
    ),
]


def machine_paths(text: str) -> list:
    """(line number, the path's start) of every machine path in ``text``."""
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), start=1) for m in MACHINE_PATH.finditer(line)]


def repository_text_files() -> list:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    files = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file():  # deleted in the work tree, not yet in git
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary: images, checkpoints
            continue
        files.append((name, data.decode("utf-8", errors="replace")))
    return files


# Written with "|" for the "/" that starts each path, so that this file does not hold what it looks for.
@pytest.mark.parametrize(
    "text, found",
    [
        ("python x.py --out |tmp/a.csv", ["|tmp"]),
        ("root: |work/shared/data/cifar10", ["|work"]),
        ("Checkpoint |root/grda-runs/x.pth", ["|root"]),
        ("cd |home/alice/grda && make", ["|home/alice"]),
        ("open |Users/bob/x", ["|Users/bob"]),
        ("`--out |tmp`", ["|tmp"]),
        ("src/tmp/x, https://example.org/tmp/x, ~/grda-runs, $HOME/x, ../shared/data, /usr/bin/env, |tmpfs", []),
    ],
)
def test_machine_paths_are_found(text, found):
    assert [path for _, path in machine_paths(text.replace("|", "/"))] == [f.replace("|", "/") for f in found]


def test_no_machine_paths_in_tracked_files():
    offenders = []
    for name, text in repository_text_files():
        lines = text.splitlines()
        for n, path in machine_paths(text):
            line = lines[n - 1]
            if not any(name == f and part in line for f, part, _ in ALLOWED):
                offenders.append(f"{name}:{n}: {path} in: {line.strip()[:100]}")
    assert not offenders, (
        "absolute machine paths (use a placeholder, a relative path, an argument or an "
        "environment variable):\n" + "\n".join(offenders)
    )


def test_allowed_lines_still_exist():
    """An entry of ALLOWED whose line is gone must go too."""
    texts = dict(repository_text_files())
    for name, part, _ in ALLOWED:
        assert part in texts.get(name, ""), f"ALLOWED entry no longer needed: {name}: {part}"
