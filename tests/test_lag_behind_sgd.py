"""scripts/analysis/lag_behind_sgd.py: gRDA's train loss minus SGD's, theirs over all repeat pairs, ours per draw."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("lag_behind_sgd", ROOT / "scripts" / "analysis" / "lag_behind_sgd.py")
lag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lag)


def write_inputs(results):
    # train loss: SGD repeats 1.0 and 2.0, gRDA mu 0.7 repeats 1.5 and 3.0 -> lags 0.5, -0.5, 2.0, 1.0;
    # test accuracy 10 x the loss -> lags (SGD - gRDA) -5, 5, -20, -10
    authors = [
        dict(
            model="vgg16", dataset="cifar10", optimizer=o, mu=mu, c=c, repeat=r, epoch=1, train_loss=v, test_acc=10 * v
        )
        for o, mu, c, values in (("sgd", None, None, (1.0, 2.0)), ("grda", 0.7, lag.C, (1.5, 3.0)))
        for r, v in enumerate(values, 1)
    ]
    authors.append(  # another c of theirs: not compared
        dict(model="vgg16", dataset="cifar10", optimizer="grda", mu=0.7, c=0.1, repeat=1, epoch=1, train_loss=50)
    )
    pd.DataFrame(authors).to_csv(results / lag.AUTHORS, index=False)
    curves = pd.DataFrame(
        [  # draw (seed 1, data 1) in the main CSV; draw (seed 2, data 1) among the redraws, its gRDA alone on data 2
            dict(optimizer="SGD", mu=None, c=0, seed=1, data_seed=None, epoch=1, train_loss=2.0, test_acc=30.0),
            dict(
                optimizer="gRDA mu=0.7",
                mu=0.7,
                c=lag.C,
                seed=1,
                data_seed=None,
                epoch=1,
                train_loss=2.25,
                test_acc=27.5,
            ),
        ]
    )
    extra = pd.DataFrame(  # an epoch the authors' table lacks, a mu they have no rows of, another c: none compared
        [
            dict(optimizer="SGD", mu=None, c=0, seed=1, data_seed=None, epoch=4, train_loss=1.0, test_acc=40.0),
            dict(
                optimizer="gRDA mu=0.7", mu=0.7, c=lag.C, seed=1, data_seed=None, epoch=4, train_loss=5.0, test_acc=5.0
            ),
            dict(
                optimizer="gRDA mu=0.51", mu=0.51, c=lag.C, seed=1, data_seed=None, epoch=1, train_loss=7.0, test_acc=7
            ),
            dict(optimizer="gRDA mu=0.7", mu=0.7, c=0.1, seed=1, data_seed=None, epoch=1, train_loss=8.0, test_acc=8.0),
        ]
    )
    pd.concat([curves, extra]).to_csv(results / "cifar10_vgg16_curves.csv", index=False)
    curves.assign(train_loss=[2.0, 3.0]).to_csv(results / "cifar10_vgg16_q40_curves.csv", index=False)
    redraw = pd.DataFrame(
        [
            dict(optimizer="SGD", mu=None, c=0, seed=2, data_seed=1, epoch=1, train_loss=2.5, test_acc=20.0),
            dict(optimizer="gRDA mu=0.7", mu=0.7, c=lag.C, seed=2, data_seed=1, epoch=1, train_loss=2.0, test_acc=21.0),
            dict(optimizer="gRDA mu=0.7", mu=0.7, c=lag.C, seed=1, data_seed=2, epoch=1, train_loss=9.0, test_acc=1.0),
        ]
    )
    redraw.to_csv(results / "cifar10_vgg16_redraw_curves.csv", index=False)


def test_lags_theirs_over_all_pairs_ours_per_draw(tmp_path):
    write_inputs(tmp_path)
    assert lag.main(["--results", str(tmp_path), "--out", str(tmp_path)]) == 0
    out = pd.read_csv(tmp_path / "cifar10_vgg16_lag.csv")
    assert set(out[out.source == "ours"].epoch) == {1}, "only the epochs of the authors' table"
    assert set(out.mu) == {0.7, 0.51} and set(out[out.mu == 0.51].source) == {"ours"}
    rows = lambda source, metric: out[(out.source == source) & (out.metric == metric) & (out.mu == 0.7)]  # noqa: E731
    theirs = rows("authors", "train_loss").iloc[0]
    assert theirs["lag"] == pytest.approx(0.75) and theirs["lag_min"] == -0.5 and theirs["lag_max"] == 2.0
    assert theirs["share_positive"] == pytest.approx(0.75)
    acc = rows("authors", "test_acc").iloc[0]
    assert acc["lag"] == pytest.approx(-7.5) and (acc["lag_min"], acc["lag_max"]) == (-20, 5)
    assert acc["share_positive"] == pytest.approx(0.25)
    ours = rows("ours", "train_loss").set_index("draw")["lag"]
    assert ours.to_dict() == pytest.approx({"seed 1, data 1": 0.25, "seed 2, data 1": -0.5, "seed 1, data 1, q40": 1.0})
    ours = rows("ours", "test_acc").set_index("draw")["lag"]
    assert ours.to_dict() == pytest.approx({"seed 1, data 1": 2.5, "seed 2, data 1": -1.0, "seed 1, data 1, q40": 2.5})
    text = (tmp_path / "cifar10_vgg16_lag.md").read_text()
    assert "| ours (seed 1, data 1) | ours (seed 1, data 1, q40) | ours (seed 2, data 1) |" in text
    assert "mu=0.51" not in text, "no table where the authors have no rows"
    assert "| 1 | +0.750 [-0.500, +2.000] | 0.75 | +0.250 | +1.000 | -0.500 |" in text
    assert "| 1 | -7.50 [-20.00, +5.00] | 0.25 | +2.50 | +2.50 | -1.00 |" in text


def test_committed_table_is_what_the_script_computes(tmp_path):
    if not (ROOT / "results" / "cifar10_vgg16_lag.md").is_file():
        pytest.fail("results/cifar10_vgg16_lag.md is missing: python scripts/analysis/lag_behind_sgd.py")
    assert lag.main(["--out", str(tmp_path)]) == 0
    for name in ("cifar10_vgg16_lag.csv", "cifar10_vgg16_lag.md"):
        assert (tmp_path / name).read_text() == (ROOT / "results" / name).read_text(), name


def test_two_runs_of_one_draw_are_an_error(tmp_path):
    write_inputs(tmp_path)
    redraw = pd.read_csv(tmp_path / "cifar10_vgg16_redraw_curves.csv")
    pd.concat([redraw, redraw.iloc[:1]]).to_csv(tmp_path / "cifar10_vgg16_redraw_curves.csv", index=False)
    with pytest.raises(SystemExit, match="two SGD runs of one draw"):
        lag.main(["--results", str(tmp_path), "--out", str(tmp_path)])
