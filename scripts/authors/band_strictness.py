#!/usr/bin/env python
"""How strict is "inside the authors' min–max band"? Their own repeats, each held against the band of the others.

    python scripts/authors/band_strictness.py [--repo CLONE] [--commit HEAD] [--out results]

The per-epoch targets of the VGG16 and WRN-28-10 comparisons (scripts/figures/make_band_figure.py) ask a run of ours
to stay inside the min–max band of the authors' repeats (9 for VGG16, 10 for WRN) in train loss and test accuracy
at every table epoch. A new run drawn from the same distribution as theirs falls outside the band of n repeats at
one check with probability 2 / (n + 1) (it is the largest or the smallest of n + 1 exchangeable draws): 20 % for
n = 9. This script measures it on their logs instead of assuming it: each repeat in turn against the band of the
other n - 1 (leave one out), per setting, metric and table epoch, and how many of their repeats would pass every
check of a run's table.

With --repo (a clone of donlan2710/gRDA-Optimizer; default $GRDA_AUTHORS_REPO) it first writes their per-repeat
values at the early epochs, results/authors_early_repeats.csv (numbers only, read from their logs by
scripts/authors/authors_wrn_curves.py's parser); without it, it reads that committed file. Writes
results/authors_band_strictness.{csv,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
EARLY = ROOT / "results" / "authors_early_repeats.csv"
METRICS = ("train_loss", "test_acc")
KEEP = ["model", "dataset", "optimizer", "mu", "c", "repeat", "epoch", "train_loss", "test_acc", "sparsity"]


def script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)  # registered: its dataclasses need it
    spec.loader.exec_module(module)
    return module


# the table epochs of our comparison, per model: the studies of scripts/figures/make_band_figure.py
STUDIES = script(ROOT / "scripts" / "figures" / "make_band_figure.py").STUDIES
TABLE_EPOCHS = {name: study.table_epochs for name, study in STUDIES.items()}


def early_repeats(repo: str, commit: str = "HEAD") -> pd.DataFrame:
    """Every repeat's values at the table epochs: VGG16 (the notebook's repeats) and WRN-28-10 on CIFAR-10."""
    awc = script(Path(__file__).with_name("authors_wrn_curves.py"))
    commit = awc.git(repo, "rev-parse", commit).strip()
    vgg = awc.load(repo, commit, [log for log in awc.vgg_logs(repo, commit) if log["notebook"]])
    wrn = awc.load(repo, commit, [log for log in awc.wrn_logs(repo, commit) if log["dataset"] == "cifar10"])
    frames = []
    for model, runs in (("vgg16", vgg), ("wrn28x10", wrn)):
        runs = runs.assign(model=model, dataset="cifar10")
        frames.append(runs[runs["epoch"].isin(TABLE_EPOCHS[model])][KEEP])
    return pd.concat(frames, ignore_index=True).sort_values(KEEP[:7]).reset_index(drop=True)


def leave_one_out(early: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, repeat, epoch, metric): whether the repeat is outside the band of the others."""
    rows = []
    settings = ["model", "optimizer", "mu", "c"]
    for key, group in early.groupby([*settings, "epoch"], dropna=False, sort=False):
        for metric in METRICS:
            values = group.set_index("repeat")[metric]
            for repeat, value in values.items():
                others = values.drop(index=repeat)
                outside = bool(value < others.min() or value > others.max())
                rows.append(dict(zip([*settings, "epoch"], key), repeat=repeat, metric=metric, outside=outside))
    return pd.DataFrame(rows)


def summary(loo: pd.DataFrame) -> pd.DataFrame:
    """Per setting: repeats n, checks per run, the share of checks outside, and the repeats inside at every check."""
    out = []
    for key, g in loo.groupby(["model", "optimizer", "mu", "c"], dropna=False, sort=False):
        per_repeat = g.groupby("repeat")["outside"].any()
        out.append(
            {
                "model": key[0],
                "optimizer": key[1],
                "mu": key[2],
                "c": key[3],
                "repeats": per_repeat.size,
                "checks_per_run": int(len(g) / per_repeat.size),
                # a new run exchangeable with their n repeats is the largest or smallest of n + 1 draws
                "new_run_outside_per_check_pct": 100 * 2 / (per_repeat.size + 1),
                "repeats_inside_everywhere": int((~per_repeat).sum()),
            }
        )
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame, source: str) -> str:
    lines = [
        "# How strict is the min–max band? The authors' repeats against each other",
        "",
        f"Made by `python scripts/authors/band_strictness.py` from {source}. Each of the authors' repeats in turn is "
        "held against the min–max band of their other repeats (leave one out) in train loss and test accuracy at "
        "every table epoch of our comparison (VGG16: 1, 2, 3, 5, 10, 15, 20; WRN-28-10: 1, 2, 3, 5, 10) — the test "
        "our runs face, against one repeat fewer. At each check exactly two repeats (the largest and the smallest) "
        "are outside the others' band, so what tells is how many repeats stay inside at every check. A new run "
        "exchangeable with their n repeats (ours, if nothing differs) is outside their band at one check with "
        "probability 2 / (n + 1).",
        "",
        "| model | setting | repeats n | checks per run | a new run outside, per check (%) | "
        "their repeats inside the others' band at every check |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for _, r in table.iterrows():
        setting = "SGD" if r["optimizer"] == "sgd" else f"gRDA mu={r['mu']:g} c={r['c']:g}"
        lines.append(
            f"| {r['model']} | {setting} | {r['repeats']} | {r['checks_per_run']} | "
            f"{r['new_run_outside_per_check_pct']:.1f} | {r['repeats_inside_everywhere']} of {r['repeats']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=os.environ.get("GRDA_AUTHORS_REPO"), help="a clone of the authors' repository")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    if args.repo:
        early = early_repeats(args.repo, args.commit)
        early.to_csv(args.out / EARLY.name, index=False, float_format="%.6g")
    elif EARLY.is_file():
        early = pd.read_csv(EARLY)
    else:
        sys.exit(f"error: neither --repo nor {EARLY} (make authors-logs REPO=CLONE writes it)")
    table = summary(leave_one_out(early))
    table.to_csv(args.out / "authors_band_strictness.csv", index=False, float_format="%.4g")
    text = markdown(table, f"results/{EARLY.name} (their per-repeat values, read from their logs with --repo)")
    (args.out / "authors_band_strictness.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
