"""scripts/analysis/acc_given_loss.py: test accuracy against their line through (train loss, test accuracy)."""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
import pytest

from scripts.analysis.lag_behind_sgd import AUTHORS
from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("acc_given_loss", ROOT / "scripts" / "analysis" / "acc_given_loss.py")
script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = script
spec.loader.exec_module(script)

LINE = (100.0, -30.0)  # their repeats lie on test_acc = 100 - 30 * train_loss


def their_row(optimizer, mu, c, repeat, loss, acc=None):
    acc = LINE[0] + LINE[1] * loss if acc is None else acc
    return dict(
        model="vgg16", dataset="cifar10", optimizer=optimizer, mu=mu, c=c, repeat=repeat, epoch=1, train_loss=loss,
        test_acc=acc,
    )  # fmt: skip


def our_row(optimizer, mu, c, seed, loss, offset, epoch=1, data_seed=None):
    return dict(
        optimizer=optimizer, mu=mu, c=c, seed=seed, data_seed=data_seed, epoch=epoch, train_loss=loss,
        test_acc=LINE[0] + LINE[1] * loss + offset,
    )  # fmt: skip


def write_inputs(results):
    authors = [
        their_row("sgd", None, None, 1, 2.0),
        their_row("sgd", None, None, 2, 2.2),
        # +1 and -1 at one loss: the line stays, its residual sd is sqrt(2 / (6 - 2)); mean residuals SGD +1/3,
        # gRDA mu 0.7 -1/3
        their_row("sgd", None, None, 3, 2.1, acc=LINE[0] + LINE[1] * 2.1 + 1.0),
        their_row("grda", 0.7, script.C, 4, 2.1, acc=LINE[0] + LINE[1] * 2.1 - 1.0),
        their_row("grda", 0.7, script.C, 1, 2.1),
        their_row("grda", 0.7, script.C, 2, 2.3),
        their_row("grda", 0.7, script.C, 3, 2.25, acc=10.0),  # collapsed: one class for every image, off the line
        their_row("grda", 0.7, 0.1, 1, 1.0, acc=90.0),  # another c: not theirs to compare
    ]
    pd.DataFrame(authors).to_csv(results / AUTHORS, index=False)
    pd.DataFrame(
        [
            our_row("SGD", None, 0, 1, 2.0, +3.0),
            our_row("gRDA mu=0.7", 0.7, script.C, 1, 2.1, -1.5),
            our_row("gRDA mu=0.7", 0.7, script.C, 1, 1.0, 0.0, epoch=4),  # an epoch their table lacks
            our_row("gRDA mu=0.7", 0.7, 0.1, 1, 2.0, 50.0),  # another c
        ]
    ).to_csv(results / "cifar10_vgg16_curves.csv", index=False)
    pd.DataFrame([our_row("gRDA mu=0.7", 0.7, script.C, 2, 2.2, +2.0, data_seed=1)]).to_csv(
        results / "cifar10_vgg16_redraw_curves.csv", index=False
    )
    pd.DataFrame([our_row("SGD", None, 0, 1, 2.3, -4.0)]).to_csv(results / "cifar10_vgg16_q40_curves.csv", index=False)


def test_residuals_from_their_line(tmp_path):
    write_inputs(tmp_path)
    assert script.main(["--results", str(tmp_path), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "cifar10_vgg16_acc_given_loss.csv")
    means = table[table.run.str.startswith("mean of")].set_index(["source", "optimizer"])["residual"]
    out = table[~table.run.str.startswith("mean of")]
    assert set(out.epoch) == {1}, "only the epochs of the authors' table"
    assert out.slope.iloc[0] == pytest.approx(LINE[1]) and out.intercept.iloc[0] == pytest.approx(LINE[0])
    assert (out.n_fit == 6).all(), "the collapsed repeat and the other c are not fitted"
    assert out.residual_sd.iloc[0] == pytest.approx(0.5**0.5)
    collapsed = out[out.collapsed.astype(bool)]
    assert len(collapsed) == 1 and collapsed.train_loss.iloc[0] == 2.25
    ours = out[out.source == "ours"].set_index(["optimizer", "run"])["residual"]
    assert ours.to_dict() == pytest.approx(
        {
            ("SGD", "seed 1, data 1"): 3.0,
            ("gRDA mu=0.7", "seed 1, data 1"): -1.5,
            ("gRDA mu=0.7", "seed 2, data 1"): 2.0,
            ("SGD", "seed 1, data 1, q40"): -4.0,
        }
    )
    assert sorted(out[(out.source == "authors") & ~out.collapsed.astype(bool)].residual.round(9)) == [-1, 0, 0, 0, 0, 1]
    vs_theirs = out[out.source == "ours"].set_index(["optimizer", "run"])["residual_vs_theirs"]
    assert vs_theirs.to_dict() == pytest.approx(
        {
            ("SGD", "seed 1, data 1"): 3.0 - 1 / 3,
            ("gRDA mu=0.7", "seed 1, data 1"): -1.5 + 1 / 3,
            ("gRDA mu=0.7", "seed 2, data 1"): 2.0 + 1 / 3,
            ("SGD", "seed 1, data 1, q40"): -4.0 - 1 / 3,
        },
        abs=1e-5,
    )
    assert means.to_dict() == pytest.approx(
        {("authors", "SGD"): 1 / 3, ("authors", "gRDA mu=0.7"): -1 / 3, ("ours", "all"): (3.0 - 1.5 + 2.0) / 3},
        abs=1e-5,
    ), "their means leave the collapsed repeat out, ours the q40 runs"
    text = (tmp_path / "cifar10_vgg16_acc_given_loss.md").read_text()
    assert "| slope (points per unit of loss) | -30.0 |" in text and "| intercept | 100.0 |" in text
    assert "| ours, SGD (seed 1, data 1) | +3.00 |" in text
    assert "| ours, SGD (seed 1, data 1, q40) | -4.00 |" in text
    assert "| ours on the usual copy: mean | +1.17 |" in text and "Runs in that mean, per epoch: 1: 3." in text
    assert (tmp_path / "figures" / "vgg16_acc_given_loss.png").stat().st_size > 10_000


def test_committed_table_is_what_the_script_computes(tmp_path):
    if not (ROOT / "results" / "cifar10_vgg16_acc_given_loss.md").is_file():
        pytest.fail("results/cifar10_vgg16_acc_given_loss.md is missing: python scripts/analysis/acc_given_loss.py")
    assert script.main(["--out", str(tmp_path)]) == 0
    for name in ("cifar10_vgg16_acc_given_loss.csv", "cifar10_vgg16_acc_given_loss.md"):
        assert (tmp_path / name).read_text() == (ROOT / "results" / name).read_text(), name
