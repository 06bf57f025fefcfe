"""src/eval_sparsity.py against a direct count, on every checkpoint shape it accepts, and its errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from src.errors import CheckpointError
from src.eval_sparsity import checkpoint_sparsity
from tests.helpers import ROOT


def sparse_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
    with torch.no_grad():
        for p in model.parameters():
            p[torch.rand_like(p) < 0.6] = 0.0
    return model


def direct_count(model):
    params = dict(model.named_parameters())
    weights = {"0.weight", "3.weight"}
    return {
        "num_params": sum(p.numel() for p in params.values()),
        "num_zeros": sum(int((p == 0).sum()) for p in params.values()),
        "num_weights": sum(params[n].numel() for n in weights),
        "num_weight_zeros": sum(int((params[n] == 0).sum()) for n in weights),
    }


@pytest.mark.parametrize("layout", ["bare", "harness", "authors"])
def test_counts_match_direct_count(tmp_path, layout):
    model = sparse_model()
    sd = model.state_dict()
    obj = {
        "bare": sd,
        "harness": {"model": sd, "optimizer": {}, "epoch": 3},
        "authors": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 90, "arch": "resnet50"},
    }[layout]
    torch.save(obj, tmp_path / "ckpt.pth")
    got = checkpoint_sparsity(str(tmp_path / "ckpt.pth"))
    want = direct_count(model)
    for key, value in want.items():
        assert got[key] == value, key
    assert got["sparsity"] == pytest.approx(100 * want["num_zeros"] / want["num_params"])
    assert "0.weight" in got["per_layer"] and "1.running_mean" not in got["per_layer"]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "src/eval_sparsity.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_table_and_json(tmp_path):
    model = sparse_model()
    torch.save(model.state_dict(), tmp_path / "m.pth")
    table = run_cli(tmp_path / "m.pth")
    assert table.returncode == 0
    assert "3.weight" in table.stdout and "conv/linear weights" in table.stdout and "all parameters" in table.stdout
    js = run_cli(tmp_path / "m.pth", "--json")
    data = json.loads(js.stdout)
    assert data["num_zeros"] == direct_count(model)["num_zeros"]
    assert data["per_layer"]["3.weight"]["shape"] == [10, 7200]


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "truncated", "text", "evil_pickle", "not_weights"])
def test_bad_files_one_line_nonzero_exit(tmp_path, kind):
    path = tmp_path / "bad.pth"
    if kind == "truncated":
        torch.save(sparse_model().state_dict(), path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "text":
        path.write_text("hello\n")
    elif kind == "evil_pickle":
        path.write_bytes(pickle.dumps({"w": Evil()}))
    elif kind == "not_weights":
        torch.save({"epoch": 3, "note": "no tensors"}, path)
    proc = run_cli(path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "bad.pth" in proc.stderr and "Traceback" not in proc.stderr
    assert "pwned" not in proc.stdout


def test_api_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint_sparsity(str(tmp_path / "nope.pth"))
