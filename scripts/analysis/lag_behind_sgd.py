#!/usr/bin/env python
"""How far gRDA's training loss lags SGD's in VGG16's first epochs: the authors' repeats beside our draws.

    python scripts/analysis/lag_behind_sgd.py [--results results] [--out results]

lag = the epoch's mean training loss of gRDA (one mu) minus SGD's, at the same epoch. A band check asks whether one
of our runs lies among the authors' repeats; the lag asks whether gRDA slows training relative to SGD as much in ours
as in theirs, which no shift common to both optimizers (the data copy, the initial weights) can explain away.

- Ours: paired on one draw (the same seed and data_seed: the same initial weights, data order, augmentation and
  dropout), from results/cifar10_vgg16_curves.csv and results/cifar10_vgg16_redraw_curves.csv.
- Theirs: their repeats all start from one initialisation and one nominal data order and differ only through what
  their code does not seed (results/cifar10_vgg16.md), so no gRDA repeat pairs with one SGD repeat: every gRDA
  repeat minus every SGD repeat (9 x 9 differences), from results/authors_early_repeats.csv.

Writes results/cifar10_vgg16_lag.csv (one row per source, mu, epoch and draw) and results/cifar10_vgg16_lag.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
OURS = ("cifar10_vgg16_curves.csv", "cifar10_vgg16_redraw_curves.csv")
AUTHORS = "authors_early_repeats.csv"
C = 0.0005  # the authors' VGG16 gRDA runs compared (make_band_figure's study)


def read(results: Path, name: str) -> pd.DataFrame:
    path = results / name
    if not path.is_file():
        sys.exit(f"error: '{path}' not found; it is committed in results/ (see results/cifar10_vgg16.md)")
    return pd.read_csv(path)


def draw_name(seed, data_seed) -> str:
    return f"seed {seed:g}, data {seed if pd.isna(data_seed) else data_seed:g}"


def our_lags(results: Path) -> pd.DataFrame:
    runs = pd.concat([read(results, n) for n in OURS if n == OURS[0] or (results / n).is_file()], ignore_index=True)
    runs["draw"] = [draw_name(s, d) for s, d in zip(runs["seed"], runs["data_seed"])]
    sgd = runs[runs["optimizer"] == "SGD"][["draw", "epoch", "train_loss"]]
    grda = runs[runs["optimizer"] != "SGD"][["draw", "epoch", "mu", "train_loss"]]
    both = grda.merge(sgd, on=["draw", "epoch"], suffixes=("", "_sgd"))  # only the draws SGD ran too
    return pd.DataFrame(
        {
            "source": "ours",
            "mu": both["mu"],
            "epoch": both["epoch"],
            "draw": both["draw"],
            "lag": both["train_loss"] - both["train_loss_sgd"],
        }
    )


def their_lags(results: Path) -> pd.DataFrame:
    early = read(results, AUTHORS)
    early = early[(early["model"] == "vgg16") & (early["dataset"] == "cifar10")]
    sgd = early[early["optimizer"] == "sgd"][["epoch", "repeat", "train_loss"]]
    rows = []
    for (mu, epoch), grda in early[(early["optimizer"] == "grda") & (early["c"] == C)].groupby(["mu", "epoch"]):
        base = sgd[sgd["epoch"] == epoch]["train_loss"].to_numpy()
        lags = pd.Series([g - s for g in grda["train_loss"] for s in base])
        rows.append(
            {
                "source": "authors",
                "mu": mu,
                "epoch": epoch,
                "draw": f"{len(grda)} x {len(base)} repeats",
                "lag": lags.mean(),
                "lag_min": lags.min(),
                "lag_max": lags.max(),
                "share_positive": (lags > 0).mean(),
            }
        )
    return pd.DataFrame(rows)


def markdown(theirs: pd.DataFrame, ours: pd.DataFrame) -> str:
    lines = [
        "# VGG16, CIFAR-10: how far gRDA's train loss lags SGD's, theirs and ours",
        "",
        "Made by `python scripts/analysis/lag_behind_sgd.py` (its docstring says how the lags are formed). lag = "
        "train loss of gRDA − train loss of SGD at the same epoch. Theirs: mean [min, max] over every gRDA repeat "
        "minus every SGD repeat, and the share of those differences above 0 (1.00: all); ours: one lag per draw "
        "(gRDA and SGD from the same initial weights and data draw).",
        "",
    ]
    draws = sorted(ours["draw"].unique())
    for mu, group in theirs.groupby("mu"):
        mine = ours[ours["mu"] == mu]
        epochs = sorted(set(mine["epoch"]) & set(group["epoch"]))
        if not epochs:
            continue
        lines += [
            f"## gRDA mu={mu:g} − SGD",
            "",
            "| epoch | theirs: mean [min, max] | theirs: share > 0 | "
            + " | ".join(f"ours ({d})" for d in draws)
            + " |",
            "|---:|---:|---:|" + "---:|" * len(draws),
        ]
        for epoch in epochs:
            t = group[group["epoch"] == epoch].iloc[0]
            cells = [f"{t['lag']:+.3f} [{t['lag_min']:+.3f}, {t['lag_max']:+.3f}]", f"{t['share_positive']:.2f}"]
            for d in draws:
                lag = mine[(mine["epoch"] == epoch) & (mine["draw"] == d)]["lag"]
                cells.append(f"{lag.iloc[0]:+.3f}" if len(lag) else "–")
            lines.append(f"| {epoch:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="where the input CSVs are")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    theirs, ours = their_lags(args.results), our_lags(args.results)
    ours = ours[ours["epoch"].isin(theirs["epoch"].unique())]
    args.out.mkdir(parents=True, exist_ok=True)
    pd.concat([theirs, ours], ignore_index=True).to_csv(
        args.out / "cifar10_vgg16_lag.csv", index=False, float_format="%.6g"
    )
    text = markdown(theirs, ours)
    (args.out / "cifar10_vgg16_lag.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
