"""Running the entrypoint in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(run_dir, *overrides, check=True, env=None, timeout=600):
    cmd = [sys.executable, "src/train.py", f"hydra.run.dir={run_dir}", "trainer.progress=false", *overrides]
    # One thread per run: the suite runs two test workers on two cores, and the models are tiny.
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())
