#!/usr/bin/env python
"""The same VGG16 run (same command, seed, initial weights and data order) trained on two machines, epoch by epoch:
how far CPU rounding alone moves a run, beside how far the authors' repeats spread.

    python scripts/analysis/compare_machines.py --before results/cifar10_vgg16_first_machine_curves.csv \
        [--after results/cifar10_vgg16_curves.csv] [--out results/cifar10_vgg16_machines]

--before and --after are curves CSVs as `scripts/runs/cifar10_runs.py collect --setting vgg16` writes them; either
may be REV:PATH, read with `git show` (e.g. 48fc377:results/cifar10_vgg16_curves.csv, the committed curves of the
first machine, which results/cifar10_vgg16_first_machine_curves.csv copies). A run is matched by its
optimizer label, seed and data_seed, and must start from the same initial weights (sha256) in both files; a run
whose two files give it the same cpu (one the later file kept from the earlier machine) is left out.

Per run and epoch: train loss, test accuracy and % zeros on each machine, after − before, and each machine's z
against the authors' repeats (ours − their mean, over their standard deviation). Their repeats share one seed and
differ only by what their code does not seed (results/cifar10_vgg16.md), so the spread between our two machines is
the CPU counterpart of theirs: a z that stays put from one machine to the other is a property of the draw (initial
weights, data order, the data copy), not of rounding. Writes OUT.csv and OUT.md.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "figures"))
from make_band_figure import METRICS, VGG16, read_authors  # noqa: E402

RUN = ["optimizer", "seed", "data_seed"]


def read_curves(spec: str) -> pd.DataFrame:
    """A curves CSV from the work tree, or from a commit as REV:PATH."""
    path = Path(spec)
    if path.is_file():
        return pd.read_csv(path)
    if ":" in spec:
        shown = subprocess.run(["git", "show", spec], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode == 0:
            return pd.read_csv(io.StringIO(shown.stdout))
        sys.exit(f"error: cannot read '{spec}' from git ({shown.stderr.strip()}); give a file or REV:PATH")
    sys.exit(
        f"error: '{spec}' not found; give a curves CSV or REV:PATH (e.g. 48fc377:results/cifar10_vgg16_curves.csv)"
    )


def machine(curves: pd.DataFrame) -> pd.Series:
    cpu = curves["cpu"] if "cpu" in curves else pd.Series(index=curves.index, dtype=object)
    return cpu.astype(object).fillna("not recorded")


def paired(before: pd.DataFrame, after: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch both files have, with each machine's value, the difference and both z."""
    keep = RUN + ["epoch", "initial_weights_sha256", *METRICS]
    b = before.assign(cpu=machine(before))[keep + ["cpu"]]
    a = after.assign(cpu=machine(after))[keep + ["cpu"]]
    both = b.merge(a, on=RUN + ["epoch"], suffixes=("_before", "_after"), how="inner")
    if both.empty:
        sys.exit("error: the two files share no run and epoch (runs are matched by optimizer, seed and data_seed)")
    same = both["cpu_before"] == both["cpu_after"]  # a run the later file kept from the earlier machine, or unknown
    for name, cpu in both.loc[same, ["optimizer", "cpu_after"]].drop_duplicates().itertuples(index=False):
        print(f"{name}: not compared, both files give it the cpu '{cpu}'")
    both = both[~same]
    if both.empty:
        sys.exit("error: no run of the two files ran on two machines (the cpu column tells them apart)")
    digests = both[["initial_weights_sha256_before", "initial_weights_sha256_after"]]
    differ = digests.notna().all(axis=1) & (digests.iloc[:, 0] != digests.iloc[:, 1])
    if differ.any():
        runs = sorted(both.loc[differ, "optimizer"].unique())
        sys.exit(f"error: {', '.join(runs)} started from other initial weights in the two files; not one run")
    both = both.merge(authors, on=["optimizer", "epoch"], how="left")
    for m in METRICS:
        both[f"{m}_diff"] = both[f"{m}_after"] - both[f"{m}_before"]
        spread = both[f"{m}_std"].where(both[f"{m}_std"] > 0)
        both[f"{m}_diff_sd"] = both[f"{m}_diff"] / spread  # the difference in units of their spread
        for side in ("before", "after"):
            both[f"{m}_z_{side}"] = (both[f"{m}_{side}"] - both[f"{m}_mean"]) / spread
    return both


def markdown(both: pd.DataFrame) -> str:
    lines = [
        "# One VGG16 run on two machines",
        "",
        "Made by `scripts/analysis/compare_machines.py` (its docstring says how). Before: "
        + ", ".join(sorted(both["cpu_before"].unique()))
        + "; after: "
        + ", ".join(sorted(both["cpu_after"].unique()))
        + ". z: (ours − the authors' mean) / their standard deviation over their 9 repeats.",
        "",
        "| optimizer | epoch | train loss before | after | Δ | z before | z after "
        "| test acc before | after | Δ | z before | z after | zeros % Δ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in both.itertuples():
        lines.append(
            f"| {r.optimizer} | {r.epoch} | {r.train_loss_before:.3f} | {r.train_loss_after:.3f} "
            f"| {r.train_loss_diff:+.3f} | {r.train_loss_z_before:+.2f} | {r.train_loss_z_after:+.2f} "
            f"| {r.test_acc_before:.2f} | {r.test_acc_after:.2f} | {r.test_acc_diff:+.2f} "
            f"| {r.test_acc_z_before:+.2f} | {r.test_acc_z_after:+.2f} | {r.sparsity_diff:+.2f} |"
        )
    lines.append("")
    for name, run in both.groupby("optimizer", sort=False):
        moved = run.loc[(run["train_loss_diff"] != 0) | (run["test_acc_diff"] != 0), "epoch"]
        first = f"first differs at epoch {moved.min()}" if len(moved) else "identical at every epoch"
        lines.append(
            f"- {name} (epochs {run['epoch'].min()}–{run['epoch'].max()}): {first}; largest |Δ| train loss "
            f"{run['train_loss_diff'].abs().max():.3f}, {run['train_loss_diff_sd'].abs().max():.2f} of their sd at "
            f"most; test accuracy {run['test_acc_diff'].abs().max():.2f} points, "
            f"{run['test_acc_diff_sd'].abs().max():.2f} of their sd at most."
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="curves CSV or REV:PATH of the earlier machine")
    ap.add_argument("--after", default=str(ROOT / "results" / VGG16.ours_csv))
    ap.add_argument("--authors", type=Path, default=ROOT / "results" / VGG16.authors_csv)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "cifar10_vgg16_machines")
    args = ap.parse_args(argv)
    before, after = read_curves(args.before), read_curves(args.after)
    if not args.authors.is_file():
        sys.exit(
            f"error: '{args.authors}' not found; it is committed in results/ "
            "(made by scripts/authors/authors_wrn_curves.py)"
        )
    both = paired(before, after, read_authors(args.authors))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    both.to_csv(args.out.with_suffix(".csv"), index=False, float_format="%.6g")
    text = markdown(both)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
