#!/usr/bin/env python
"""How far gRDA lags SGD in VGG16's first epochs, in train loss and test accuracy: the authors' repeats beside our
draws.

    python scripts/analysis/lag_behind_sgd.py [--results results] [--out results]

lag, per epoch: train loss of gRDA (one mu) minus SGD's; test accuracy of SGD minus gRDA's (points). Positive: gRDA
behind. A band check asks whether one run of ours lies among the authors' repeats; the lag asks whether gRDA holds
training back relative to SGD as much in ours as in theirs; a shift that moved both optimizers alike (the data copy,
the initial weights) would cancel in it, though the lag still varies from draw to draw.

- Ours: paired on one draw (the same seed and data_seed: the same initial weights, data order, augmentation and
  dropout), from results/cifar10_vgg16_curves.csv and results/cifar10_vgg16_redraw_curves.csv; and, where
  results/cifar10_vgg16_q40_curves.csv is there, the first draw on CIFAR-10 re-encoded at JPEG quality 40
  (cifar10_runs.py --setting vgg16_q40), named "..., q40"; and results/cifar10_vgg16_first_machine_curves.csv,
  the three main runs as the first machine trained them (epochs 1-10), named "..., first machine": all three ran
  on one machine there, while the main file's SGD ran on another (results/cifar10_vgg16.md).
- Theirs: their repeats all start from one initialisation and one nominal data order and differ only through what
  their code does not seed (results/cifar10_vgg16.md), so no gRDA repeat pairs with one SGD repeat: every gRDA
  repeat minus every SGD repeat (9 x 9 differences), from results/authors_early_repeats.csv.

Writes results/cifar10_vgg16_lag.csv (one row per source, metric, mu, epoch and draw) and
results/cifar10_vgg16_lag.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import List, Optional

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
# our curves (the first required) -> what their draws' names add: the q40 runs are the first draw on other data;
# the first machine's are the three main runs as an AMD EPYC trained them to epoch 10 (the main file's SGD is a
# second machine's since the eleventh session, paired there with the first machine's gRDA runs)
OURS = {
    "cifar10_vgg16_curves.csv": "",
    "cifar10_vgg16_redraw_curves.csv": "",
    "cifar10_vgg16_q40_curves.csv": ", q40",
    "cifar10_vgg16_first_machine_curves.csv": ", first machine",
}
AUTHORS = "authors_early_repeats.csv"
C = 0.0005  # the authors' VGG16 gRDA runs compared (make_band_figure's study)
# metric -> (title, sign): lag = sign * (gRDA - SGD), positive when gRDA is behind
METRICS = {"train_loss": ("train loss: gRDA − SGD", 1), "test_acc": ("test accuracy (points): SGD − gRDA", -1)}


def read(results: Path, name: str) -> pd.DataFrame:
    path = results / name
    if not path.is_file():
        sys.exit(f"error: '{path}' not found; it is committed in results/ (see results/cifar10_vgg16.md)")
    return pd.read_csv(path)


def draw_name(seed, data_seed) -> str:
    return f"seed {seed:g}, data {seed if pd.isna(data_seed) else data_seed:g}"


def our_curves(results: Path) -> pd.DataFrame:
    """Every VGG16 run of ours (the main CSV required, the others where they are), each row named by its draw."""
    main = next(iter(OURS))
    frames = [
        read(results, name).assign(data=suffix)
        for name, suffix in OURS.items()
        if name == main or (results / name).is_file()
    ]
    runs = pd.concat(frames, ignore_index=True)
    runs["draw"] = [draw_name(s, d) + q for s, d, q in zip(runs["seed"], runs["data_seed"], runs["data"])]
    return runs


def their_repeats(results: Path) -> pd.DataFrame:
    """The authors' VGG16 repeats at the early epochs: SGD and gRDA at c = C."""
    early = read(results, AUTHORS)
    early = early[(early["model"] == "vgg16") & (early["dataset"] == "cifar10")]
    return early[(early["optimizer"] == "sgd") | (early["c"] == C)]


def our_lags(results: Path) -> pd.DataFrame:
    runs = our_curves(results)
    sgd = runs[runs["optimizer"] == "SGD"][["draw", "epoch", *METRICS]]
    grda = runs[(runs["optimizer"] != "SGD") & (runs["c"] == C)][["draw", "epoch", "mu", *METRICS]]
    for name, df, keys in (("SGD", sgd, ["draw", "epoch"]), ("gRDA", grda, ["draw", "epoch", "mu"])):
        if df.duplicated(keys).any():
            sys.exit(f"error: two {name} runs of one draw in our curves ({df[df.duplicated(keys)].iloc[0].to_dict()})")
    both = grda.merge(sgd, on=["draw", "epoch"], suffixes=("", "_sgd"))  # only the draws SGD ran too
    frames = [
        pd.DataFrame(
            {
                "source": "ours",
                "metric": metric,
                "mu": both["mu"],
                "epoch": both["epoch"],
                "draw": both["draw"],
                "lag": sign * (both[metric] - both[f"{metric}_sgd"]),
            }
        )
        for metric, (_, sign) in METRICS.items()
    ]
    return pd.concat(frames, ignore_index=True)


def their_lags(results: Path) -> pd.DataFrame:
    early = their_repeats(results)
    sgd = early[early["optimizer"] == "sgd"]
    rows = []
    grdas = early[early["optimizer"] == "grda"].groupby(["mu", "epoch"])
    for (metric, (_, sign)), ((mu, epoch), grda) in itertools.product(METRICS.items(), grdas):
        base = sgd[sgd["epoch"] == epoch][metric].to_numpy()
        lags = pd.Series([sign * (g - s) for g in grda[metric] for s in base])
        rows.append(
            {
                "source": "authors",
                "metric": metric,
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


def lag_table(theirs: pd.DataFrame, mine: pd.DataFrame, draws: List[str], digits: int) -> List[str]:
    """One row per epoch both have: their mean [min, max] and share above 0, then ours per draw."""
    f = f"{{:+.{digits}f}}".format
    lines = [
        "| epoch | theirs: mean [min, max] | theirs: share > 0 | " + " | ".join(f"ours ({d})" for d in draws) + " |",
        "|---:|---:|---:|" + "---:|" * len(draws),
    ]
    for epoch in sorted(set(mine["epoch"]) & set(theirs["epoch"])):
        t = theirs[theirs["epoch"] == epoch].iloc[0]
        cells = [f"{f(t['lag'])} [{f(t['lag_min'])}, {f(t['lag_max'])}]", f"{t['share_positive']:.2f}"]
        for d in draws:
            lag = mine[(mine["epoch"] == epoch) & (mine["draw"] == d)]["lag"]
            cells.append(f(lag.iloc[0]) if len(lag) else "–")
        lines.append(f"| {epoch:g} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(theirs: pd.DataFrame, ours: pd.DataFrame) -> str:
    lines = [
        "# VGG16, CIFAR-10: how far gRDA lags SGD in the first epochs, theirs and ours",
        "",
        "Made by `python scripts/analysis/lag_behind_sgd.py` (its docstring says how the lags are formed). lag, at "
        "the same epoch: train loss of gRDA − SGD's; test accuracy of SGD − gRDA's (points); positive: gRDA behind. "
        "Theirs: mean [min, max] over every gRDA repeat minus every SGD repeat, and the share of those differences "
        "above 0 (1.00: all); ours: one lag per draw (gRDA and SGD from the same initial weights and data draw).",
        "",
    ]
    draws = sorted(ours["draw"].unique())
    for mu, metric in itertools.product(sorted(ours["mu"].unique()), METRICS):
        mine = ours[(ours["mu"] == mu) & (ours["metric"] == metric)]
        group = theirs[(theirs["mu"] == mu) & (theirs["metric"] == metric)]
        if mine.empty or group.empty:
            continue
        lines += [f"## gRDA mu={mu:g}, {METRICS[metric][0]}", ""]
        lines += lag_table(group, mine, draws, 3 if metric == "train_loss" else 2)
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
