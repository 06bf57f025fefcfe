"""scripts/authors/band_strictness.py: the authors' repeats held against the band of their other repeats."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from tests.helpers import ROOT

RESULTS = ROOT / "results"
spec = importlib.util.spec_from_file_location("band_strictness", ROOT / "scripts" / "authors" / "band_strictness.py")
bs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bs)


def test_leave_one_out_counts_the_extremes_and_who_stays_inside():
    # repeat 1 is the largest at both epochs and both metrics, repeat 3 the smallest: they are outside the others'
    # band everywhere; repeat 2 stays inside everywhere; with repeat 4 sometimes largest, nobody else passes
    values = {1: 9.0, 2: 5.0, 3: 1.0, 4: 6.0}
    rows = [
        dict(model="m", optimizer="sgd", mu=None, c=None, repeat=r, epoch=e, train_loss=v + e, test_acc=v * e)
        for e in (1, 2)
        for r, v in values.items()
    ]
    loo = bs.leave_one_out(pd.DataFrame(rows))
    outside = loo.groupby("repeat")["outside"].all()
    assert outside[1] and outside[3] and not loo.loc[loo.repeat.isin([2, 4]), "outside"].any()
    table = bs.summary(loo)
    assert table.loc[0, "repeats"] == 4 and table.loc[0, "checks_per_run"] == 4
    assert table.loc[0, "repeats_inside_everywhere"] == 2
    assert table.loc[0, "new_run_outside_per_check_pct"] == pytest.approx(40.0)


def test_early_repeats_agree_with_the_committed_curves():
    """The per-repeat values aggregate to the committed mean / min / max of authors_{vgg16,wrn}_curves.csv."""
    early = pd.read_csv(RESULTS / "authors_early_repeats.csv")
    for model, curves_file in (("vgg16", "authors_vgg16_curves.csv"), ("wrn28x10", "authors_wrn_curves.csv")):
        curves = pd.read_csv(RESULTS / curves_file)
        curves = curves[(curves.dataset == "cifar10") & curves.epoch.isin(bs.TABLE_EPOCHS[model])]
        ours = early[early.model == model]
        keys = ["optimizer", "mu", "c", "epoch"]
        agg = ours.groupby(keys, dropna=False).agg(
            n=("repeat", "size"),
            test_acc_mean=("test_acc", "mean"),
            test_acc_min=("test_acc", "min"),
            train_loss_max=("train_loss", "max"),
        )
        cols = ["n", "test_acc_mean", "test_acc_min", "train_loss_max"]
        both = curves.set_index(keys)[cols].join(agg.add_suffix("_r"))
        assert len(both) == len(agg) and len(agg) > 20
        for col in ("n", "test_acc_mean", "test_acc_min", "train_loss_max"):
            assert both[col].to_numpy() == pytest.approx(both[f"{col}_r"].to_numpy(), rel=1e-4), (model, col)


def test_committed_table_is_what_the_script_computes(tmp_path):
    assert bs.main(["--out", str(tmp_path)]) == 0
    for name in ("authors_band_strictness.csv", "authors_band_strictness.md"):
        assert (tmp_path / name).read_text() == (RESULTS / name).read_text(), name
