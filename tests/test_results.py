"""Tables and figures built from run directories."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from src.results import comparison_table, paper_results
from tests.helpers import ROOT

# Both files use the session-wide preset_runs: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("presets")


def make_tables(table, runs, out):
    proc = subprocess.run(
        [sys.executable, "scripts/make_tables.py", table, "--runs", str(runs), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out / f"{table}_table.csv"), (out / f"{table}_table.md").read_text()


def test_paper_numbers_file():
    paper = paper_results(["imagenet_resnet50", "cifar100_wrn28x10", "cifar10_wrn28x10"])
    assert len(paper) == 7 + 5 + 3
    row = paper[(paper.experiment == "imagenet_resnet50") & (paper.schedule == "step140") & (paper.mu == 0.55)].iloc[0]
    assert (row.epoch, row.sparsity, row.test_acc) == (150, 91.59, 73.24)
    assert paper["source"].notna().all()


@pytest.mark.parametrize("table,rows", [("imagenet", 7), ("cifar", 8)])
def test_tables_without_runs_say_not_run_with_commands(tmp_path, table, rows):
    df, md = make_tables(table, tmp_path / "runs", tmp_path / "out")
    assert len(df) == rows and (df["status"] == "not run").all()
    assert df["command"].str.startswith("torchrun --standalone").all()
    assert df["slurm"].str.contains("hydra/launcher=submitit_slurm").all()
    assert "not run" in md and "## How to run the missing rows" in md
    if table == "imagenet":
        sgd = df[df.optimizer == "sgd"].iloc[0]
        assert "optim=sgd schedule=constant trainer.epochs=89" in sgd["command"]
        assert "--nproc_per_node=8" in sgd["command"]


@pytest.mark.slow
def test_tables_with_tiny_runs(preset_runs, tmp_path):
    df, md = make_tables("imagenet", preset_runs["runs"], tmp_path)
    done = df[df.status == "done"]
    assert len(done) == 1, df[["lr schedule", "mu", "status"]]
    row = done.iloc[0]
    assert (row["lr schedule"], row["mu"], row["runs"]) == ("step140", 0.51, 1)
    assert row["Δ top-1"] == pytest.approx(row["top-1 %"] - 73.14)
    assert row["file MB"] > 150  # model + accumulator of ResNet-50: about twice 102 MB
    assert 0 < row["sparse export MB"] < row["file MB"]
    df, _ = make_tables("cifar", preset_runs["runs"], tmp_path)
    done = df[df.status == "done"]
    assert sorted(done["experiment"]) == ["cifar100_wrn28x10", "cifar10_wrn28x10"]
    assert (done["mu"] == 0.501).all()


def write_fake_run(run_dir, optim, mu, epochs):
    run_dir.mkdir(parents=True)
    cfg = {"experiment": "cifar10_keras_cnn", "optim": {"name": optim, "mu": mu}, "data": {"train_subset": None}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"epoch": e, "test_acc": 40 + 3 * e, "nonzero_ratio": 1 - 0.05 * e * (optim == "grda")} for e in range(1, epochs + 1)]
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)


def test_cifar10_figure_from_runs(tmp_path):
    runs = tmp_path / "runs" / "cifar10_keras_cnn"
    write_fake_run(runs / "a", "sgd", 0.7, 12)
    write_fake_run(runs / "b", "grda", 0.51, 12)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "scripts/make_cifar10_figure.py", "--runs", str(tmp_path / "runs"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("acc_test", "nonzero_weights"):
        assert (out / "figures" / f"cifar10_keras_cnn_{name}.png").stat().st_size > 10_000
    table = pd.read_csv(out / "cifar10_keras_cnn.csv")
    grda = table[table.optimizer == "gRDA mu=0.51"].iloc[0]
    assert grda["nonzero @10"] == pytest.approx(0.5) and grda["paper nonzero @10"] == pytest.approx(0.94)
    assert grda["Δ nonzero @10"] == pytest.approx(0.5 - 0.94)


def test_cifar10_figure_without_runs_fails_clearly(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/make_cifar10_figure.py", "--runs", str(tmp_path), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "no cifar10_keras_cnn runs" in proc.stderr


def test_comparison_table_api_without_runs(tmp_path):
    df = comparison_table(["cifar10_wrn28x10"], tmp_path)
    assert list(df["status"]) == ["not run"] * 3
