"""The benchmark scripts run end to end at tiny size and write their tables (their numbers are not checked here:
timings belong to `make bench` on an idle machine, not to unit tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench import bench_optimizer
from tests.fakedata import make_cifar_folder

REPO = Path(__file__).resolve().parents[1]


def test_bench_optimizer_writes_its_table(monkeypatch, tmp_path):
    variants = {k: v for k, v in bench_optimizer.OPTIMIZERS.items() if k != "GRDA impl=compiled"}  # compiling: ~40 s
    monkeypatch.setattr(bench_optimizer, "OPTIMIZERS", variants)
    out = tmp_path / "optimizer.md"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench_optimizer.py",
            "--models",
            "keras_cnn",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert bench_optimizer.main() == 0
    text = out.read_text()
    assert "## keras_cnn: 12 tensors, 1,250,858 parameters" in text
    assert "Default path vs reference path after 3 steps: max |difference| = 0." in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "step (ms)" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == list(variants)
    assert (
        "| SGD plain (foreach) |" in text and " | 1.00 | " in text.split("| SGD plain (foreach) |")[1].splitlines()[0]
    )


@pytest.mark.slow
def test_bench_train_writes_its_table(tmp_path):
    make_cifar_folder(tmp_path / "cifar", n_train=4, n_test=2)
    out = tmp_path / "train.md"
    cmd = [
        sys.executable,
        "scripts/bench/bench_train.py",
        "--setup",
        "keras_cnn",
        "--data-root",
        str(tmp_path / "cifar"),
        "--batch-size",
        "2",
        "--steps",
        "4",
        "--chunk",
        "2",
        "--rounds",
        "1",
        "--out",
        str(out),
        "--optims",
        "grda",
        "sgd",
    ]  # SGD with momentum left out: five processes, not seven
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    interleaved, separate = text.split("## Separate processes")
    for optim in ("sgd", "grda"):
        assert f"| {optim} | " in interleaved
        for loop in ("harness", "bare"):
            assert f"| {loop} | {optim} |" in separate
    assert "sgd_momentum" not in text and "the 4 variants" in text
    assert "- gRDA / SGD: harness " in text and "gRDA / SGD throughput, harness:" in text
    refused = subprocess.run(cmd[:-2] + ["grda", "sgd_momentum"], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "--optims must include sgd and grda" in refused.stderr
