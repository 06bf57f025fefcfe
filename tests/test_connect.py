"""scripts/analysis/connect.py: SGD and gRDA minima joined by a line and a trained Bezier curve (paper's Figure 1)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from src.checkpoint import load_checkpoint
from src.models import build_model
from tests.helpers import ROOT, summary, train


def load_script():
    spec = importlib.util.spec_from_file_location("connect_script", ROOT / "scripts" / "analysis" / "connect.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


connect = load_script()


def run_connect(*args):
    return subprocess.run(
        [sys.executable, "scripts/analysis/connect.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def connect_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("connect")
    sgd, grda = base / "sgd", base / "grda"
    train(sgd, "optim=sgd", "trainer.epochs=5", "trainer.threads=1")
    train(grda, "optim=grda", "trainer.epochs=5", "trainer.threads=1")
    proc = run_connect(
        sgd / "checkpoint.pth", grda / "checkpoint.pth", "--points", 7, "--curve-epochs", 1, "--threads", 1
    )
    assert proc.returncode == 0, proc.stderr
    return {"sgd": sgd, "grda": grda, "out": grda / "connect", "stdout": proc.stdout}


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {"path": r["path"], "t": float(r["t"]), "train_loss": float(r["train_loss"]), "test_acc": float(r["test_acc"])}
        for r in rows
    ]


def test_outputs_and_endpoints_reproduce_the_runs(connect_runs):
    out = connect_runs["out"]  # the default: beside the gRDA checkpoint
    assert (out / "connect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_rows(out / "connect.csv")
    assert list(rows[0]) == ["path", "t", "train_loss", "test_acc"]
    for name in ("line", "curve"):
        ts = [r["t"] for r in rows if r["path"] == name]
        assert ts == [i / 6 for i in range(7)]
    line = {r["t"]: r for r in rows if r["path"] == "line"}
    curve = {r["t"]: r for r in rows if r["path"] == "curve"}
    # No BatchNorm here, so the endpoints are exactly the trained networks: same accuracy as their runs.
    assert line[0.0]["test_acc"] == summary(connect_runs["sgd"])["test_acc"]
    assert line[1.0]["test_acc"] == summary(connect_runs["grda"])["test_acc"]
    for t in (0.0, 1.0):
        assert curve[t] == {**line[t], "path": "curve"}

    result = json.loads((out / "connect.json").read_text())
    assert result["points"] == 7 and result["curve_epochs"] == 1 and result["batchnorm_recomputed"] is False
    assert result["endpoints"]["sgd"]["train_loss"] == line[0.0]["train_loss"]
    assert result["endpoints"]["grda"]["train_loss"] == line[1.0]["train_loss"]
    assert result["endpoints"]["sgd"]["test_acc"] == summary(connect_runs["sgd"])["test_acc"]
    assert result["endpoints"]["grda"]["sparsity"] == pytest.approx(summary(connect_runs["grda"])["sparsity"])
    assert result["endpoints"]["grda"]["sparsity"] > 10 and result["endpoints"]["sgd"]["sparsity"] < 1
    for name, points in (("line", line), ("curve", curve)):
        assert result[name]["max_train_loss"] == max(r["train_loss"] for r in points.values())
    threshold = 2 * max(line[0.0]["train_loss"], line[1.0]["train_loss"])
    assert result["same_valley_threshold"] == threshold
    assert result["same_valley"] is (result["curve"]["max_train_loss"] <= threshold)
    assert "same_valley" in result["criterion"]
    assert len(result["curve"]["train_history"]) == 1
    assert "same_valley=" in connect_runs["stdout"]


def test_training_the_curve_lowers_the_loss_between_the_endpoints(connect_runs):
    rows = read_rows(connect_runs["out"] / "connect.csv")
    inner = lambda name: [r["train_loss"] for r in rows if r["path"] == name and 0 < r["t"] < 1]  # noqa: E731
    line, curve = inner("line"), inner("curve")
    # An untrained curve is the line itself; after training its middle it must be lower on average,
    # and nowhere (endpoints included) worse than the line's worst point.
    assert sum(curve) / len(curve) < sum(line) / len(line) - 1e-3
    assert (
        max(r["train_loss"] for r in rows if r["path"] == "curve")
        <= max(r["train_loss"] for r in rows if r["path"] == "line") + 1e-6
    )


def test_untrained_curve_is_the_line(connect_runs, tmp_path):
    sgd, grda = connect_runs["sgd"] / "checkpoint.pth", connect_runs["grda"] / "checkpoint.pth"
    assert (
        connect.main(
            [str(sgd), str(grda), "--points", "3", "--curve-epochs", "0", "--out", str(tmp_path), "--threads", "1"]
        )
        == 0
    )
    rows = read_rows(tmp_path / "connect.csv")
    line = [r["train_loss"] for r in rows if r["path"] == "line"]
    curve = [r["train_loss"] for r in rows if r["path"] == "curve"]
    assert curve == pytest.approx(line, rel=1e-5)


@pytest.mark.slow
def test_different_setups_are_refused_with_one_line(connect_runs, tmp_path):
    ckpt = load_checkpoint(connect_runs["grda"] / "checkpoint.pth")
    ckpt["config"]["model"]["hidden"] = [64, 64]
    torch.save(ckpt, tmp_path / "other.pth")
    proc = run_connect(connect_runs["sgd"] / "checkpoint.pth", tmp_path / "other.pth", "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.hidden is [128, 128]" in lines[0]
    assert "[64, 64]" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_argument_and_file_errors(connect_runs, tmp_path, capsys):
    sgd = str(connect_runs["sgd"] / "checkpoint.pth")
    torch.save(load_checkpoint(sgd)["model"], tmp_path / "bare.pth")
    assert connect.main([sgd, str(tmp_path / "bare.pth")]) == 2
    assert "holds no training config" in capsys.readouterr().err
    assert connect.main([sgd, str(tmp_path / "missing.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert connect.main([sgd, sgd, "--points", "1"]) == 2
    assert "--points must be >= 2" in capsys.readouterr().err
    assert (
        connect.main([sgd, sgd, "--device", "cuda:7"] if not torch.cuda.is_available() else [sgd, sgd, "--lr", "0"])
        == 2
    )
    assert "error: " in capsys.readouterr().err


def test_batchnorm_statistics_are_recomputed_for_each_point():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=0.3))
    x = torch.randn(96, 4) * 3 + 1
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(96, dtype=torch.long)), batch_size=32
    )
    params = {n: p.detach() for n, p in model.named_parameters()}
    template = {n: b.detach().clone() for n, b in model.named_buffers()}
    template["1.running_mean"].fill_(7.0)  # stale statistics from elsewhere must not leak in
    before = {n: b.clone() for n, b in template.items()}
    bufs = connect.recompute_bn(model, params, template, loader, "cpu", limit=96)
    h = model[0](x).detach()
    torch.testing.assert_close(bufs["1.running_mean"], h.mean(0))
    # Cumulative averaging weighs each batch equally: the mean of the batches' unbiased variances.
    batch_vars = torch.stack([h[i : i + 32].var(0, unbiased=True) for i in (0, 32, 64)])
    torch.testing.assert_close(bufs["1.running_var"], batch_vars.mean(0))
    assert int(bufs["1.num_batches_tracked"]) == 3
    assert model[1].momentum == 0.3 and not model.training
    assert all(torch.equal(template[n], before[n]) for n in template)
    # A limit uses only the first images.
    part = connect.recompute_bn(model, params, template, loader, "cpu", limit=40)
    torch.testing.assert_close(part["1.running_mean"], (h[:32].mean(0) + h[32:40].mean(0)) / 2)


def test_batchnorm_model_end_to_end(tmp_path):
    """A WRN (BatchNorm) on digits from two hand-made checkpoints: every t gets fresh BN statistics."""
    from src.config import Config

    config = OmegaConf.to_container(OmegaConf.structured(Config), resolve=True)
    config["model"].update(name="wrn", depth=10, widen_factor=1)
    config["data"].update(name="digits", train_subset=100, test_subset=50)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(OmegaConf.create(config["model"]), 10, (1, 8, 8))
        paths.append(tmp_path / f"wrn{seed}.pth")
        torch.save({"model": model.state_dict(), "config": config}, paths[-1])
    out = tmp_path / "out"
    assert (
        connect.main(
            [
                *map(str, paths),
                "--points",
                "3",
                "--curve-epochs",
                "1",
                "--bn-samples",
                "60",
                "--batch-size",
                "50",
                "--out",
                str(out),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    result = json.loads((out / "connect.json").read_text())
    assert result["batchnorm_recomputed"] is True and result["bn_samples"] == 60
    rows = read_rows(out / "connect.csv")
    assert len(rows) == 6 and all(r["train_loss"] == r["train_loss"] for r in rows)  # finite, not NaN
