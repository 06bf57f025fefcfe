"""Launching src/train.py from other programs, and reading what a run leaves in its directory: the one way every
launcher of scripts/runs/ and every table of scripts/figures/ does both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "src" / "train.py"


def train_command(
    *overrides: str, run_dir: Optional[Path] = None, multirun: bool = False, python: str = sys.executable
) -> List[str]:
    """The command line of one run (or of a Hydra multirun): quiet progress, the run directory when given."""
    cmd = [python, str(TRAIN), *(["-m"] if multirun else []), "trainer.progress=false", *overrides]
    return cmd + ([f"hydra.run.dir={run_dir}"] if run_dir is not None else [])


def launch(
    *overrides: str, run_dir: Optional[Path] = None, log: Optional[Path] = None, nice: int = 0, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run src/train.py from the repository root and wait: its output appended to ``log``, captured, or shown."""
    cmd = train_command(*overrides, run_dir=run_dir)
    preexec = (lambda: os.nice(nice)) if nice else None
    if log is None:
        return subprocess.run(cmd, cwd=REPO, capture_output=capture, text=True, preexec_fn=preexec)
    with open(log, "a") as out:
        return subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec)


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The last line a failed run printed on stderr (its one-line error)."""
    return ((proc.stderr or "").strip().splitlines() or ["(no output)"])[-1]


def read_summary(run_dir: Path) -> Dict[str, Any]:
    """summary.json ({} before the run's first process ended)."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def initial_weights_digest(run_dir: Path) -> Optional[str]:
    """The sha256 of a run's weights before its first step: summary.json's, or, while its first process is still
    training, the one its train.log printed at the start (None if neither has it)."""
    digest = read_summary(run_dir).get("initial_weights_sha256")
    log = Path(run_dir) / "train.log"
    if digest is None and log.is_file():
        found = re.findall(r"initial weights sha256 ([0-9a-f]{64})", log.read_text(errors="replace"))
        digest = found[0] if found else None
    return digest


def read_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(Path(run_dir) / "config.yaml")


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.csv: one row per finished epoch (empty before the first)."""
    try:
        return pd.read_csv(Path(run_dir) / "metrics.csv")
    except (OSError, pd.errors.EmptyDataError):
        return pd.DataFrame({"epoch": pd.Series(dtype=int)})


def epochs_done(run_dir: Path) -> int:
    """The last finished epoch of a run (0 for a run not started)."""
    epochs = read_metrics(run_dir).get("epoch")
    return int(epochs.max()) if epochs is not None and len(epochs) else 0


def finished_runs(root: Path) -> Iterator[Path]:
    """Every run directory under ``root`` with a summary.json and a config.yaml, in sorted order."""
    for summary in sorted(Path(root).rglob("summary.json")):
        if (summary.parent / "config.yaml").is_file():
            yield summary.parent
