"""Gradual magnitude pruning and the ||w||_2/||w||_1 metric."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from src.pruning import GradualMagnitudePruner, cubic_sparsity, log_l2_over_l1
from tests.helpers import summary, train


def gmp_cfg(**kw):
    base = dict(
        name="gmp", final_sparsity=0.8, initial_sparsity=0.0, start_fraction=0.1, end_fraction=0.5, frequency=10
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_cubic_schedule_matches_zhu_gupta():
    cfg = gmp_cfg()
    total = 1000  # pruning from step 100 to step 500
    assert cubic_sparsity(50, total, cfg) == 0.0
    assert cubic_sparsity(100, total, cfg) == pytest.approx(0.0)
    assert cubic_sparsity(300, total, cfg) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert cubic_sparsity(500, total, cfg) == pytest.approx(0.8)
    assert cubic_sparsity(900, total, cfg) == pytest.approx(0.8)


def test_pruner_reaches_target_per_layer_and_keeps_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    pruner = GradualMagnitudePruner(model, gmp_cfg(), total_steps=100)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first_masks = None
    for step in range(1, 101):
        opt.zero_grad()
        model(torch.randn(4, 3, 8, 8)).pow(2).mean().backward()
        opt.step()
        pruner.after_step(step)
        if step == 30:
            first_masks = {k: m.clone() for k, m in pruner.masks.items()}
    for name, w in pruner.weights.items():
        assert (w == 0).sum().item() == round(0.8 * w.numel()), name
        # masks only shrink: what was pruned at step 30 is still pruned
        assert not (pruner.masks[name] & ~first_masks[name]).any()
    assert model[0].bias.count_nonzero() == model[0].bias.numel()  # biases are not pruned


def test_log_l2_over_l1():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, -4.0]]))
    assert log_l2_over_l1(model) == pytest.approx(math.log(5 / 7))


@pytest.mark.slow
def test_gmp_run_resumes_bit_identically(tmp_path):
    common = ["optim=sgd", "prune=gmp", "prune.final_sparsity=0.7", "prune.frequency=10", "trainer.epochs=4"]
    train(tmp_path / "a", *common)
    killed = train(tmp_path / "b", *common, env={"GRDA_FAULT": "train_step:3:5"}, check=False)
    assert killed.returncode == -9
    train(tmp_path / "b", *common)  # the same command resumes after epoch 2
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    s = summary(tmp_path / "a")
    assert s["prune"]["name"] == "gmp"
    weights = [v for k, v in a["model"].items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.7, abs=0.01)
    rows = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    assert all(math.isfinite(float(r["log_l2_l1"])) for r in rows)
