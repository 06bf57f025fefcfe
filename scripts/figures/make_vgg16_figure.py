#!/usr/bin/env python
"""Our VGG16 / CIFAR-10 curves over the authors' band, epoch by epoch, and the table of the differences.

    python scripts/figures/make_vgg16_figure.py [--ours results/cifar10_vgg16_curves.csv]
                                        [--authors results/authors_vgg16_curves.csv] [--out results]

Reads the committed per-epoch CSVs only (no runs needed): ours from `scripts/runs/cifar10_runs.py collect
--setting vgg16`, the authors' (mean / std / min / max over the 9 repeats their notebook draws) from
`scripts/authors/authors_wrn_curves.py`. Writes results/figures/vgg16_curves.png (train loss, test accuracy and
% zeros; ours solid, the authors' mean dashed, their min–max band shaded) and results/cifar10_vgg16_table.{md,csv}:
ours beside theirs at epochs 1, 2, 3, 5, 10, 15, 20 (where reached) with the deltas and the issue's targets — % zeros
within ±1 point of their mean at every epoch; train loss and test accuracy inside their min–max band at the table's
epochs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TABLE_EPOCHS = [1, 2, 3, 5, 10, 15, 20]
ZEROS_TOLERANCE = 1.0  # points of % zeros
METRICS = {"train_loss": "train loss", "test_acc": "test accuracy (%)", "sparsity": "zeros over all parameters (%)"}
COLOURS = {"SGD": "C0", "gRDA mu=0.51": "C1", "gRDA mu=0.7": "C2"}


def label(optimizer: str, mu) -> str:
    return f"gRDA mu={float(mu):g}" if optimizer == "grda" else "SGD"


def load(ours_path: Path, authors_path: Path):
    for path, maker in (
        (ours_path, "scripts/runs/cifar10_runs.py collect --setting vgg16"),
        (authors_path, "scripts/authors/authors_wrn_curves.py"),
    ):
        if not path.is_file():
            sys.exit(f"error: '{path}' not found; it is committed in results/ (or made by {maker})")
    ours = pd.read_csv(ours_path)
    authors = pd.read_csv(authors_path)
    authors = authors[(authors["optimizer"] == "sgd") | (authors["c"] == 0.0005)]
    authors = authors.assign(optimizer=[label(o, m) for o, m in zip(authors["optimizer"], authors["mu"])])
    return ours, authors[authors["optimizer"].isin(ours["optimizer"].unique())]


def compare(ours: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch: ours, their mean / min / max, the delta and whether ours is inside."""
    both = ours.merge(authors, on=["optimizer", "epoch"], how="left")
    for m in METRICS:
        both[f"{m}_delta"] = both[m] - both[f"{m}_mean"]
        both[f"{m}_in_band"] = (both[m] >= both[f"{m}_min"]) & (both[m] <= both[f"{m}_max"])
    both["sparsity_within_1"] = both["sparsity_delta"].abs() <= ZEROS_TOLERANCE
    return both


def draw(ours: pd.DataFrame, authors: pd.DataFrame, out: Path) -> Path:
    last = max(20, int(ours["epoch"].max()) + 2)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for name, theirs in authors[authors["epoch"] <= last].groupby("optimizer", sort=False):
        colour = COLOURS.get(name, "C3")
        mine = ours[ours["optimizer"] == name]
        for ax, m in zip(axes, METRICS):
            ax.fill_between(theirs["epoch"], theirs[f"{m}_min"], theirs[f"{m}_max"], color=colour, alpha=0.15)
            ax.plot(theirs["epoch"], theirs[f"{m}_mean"], "--", color=colour, lw=1, label=f"{name} (authors)")
            ax.plot(mine["epoch"], mine[m], "o-", color=colour, lw=1.8, ms=3, label=f"{name} (ours)")
    for ax, title in zip(axes, METRICS.values()):
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_xlim(0.5, last + 0.5)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    fig.suptitle(
        "VGG16 on CIFAR-10, lr 0.1, batch 128, c 0.0005: ours (solid) vs the authors' 9 runs "
        "(dashed: mean; band: min–max)"
    )
    fig.tight_layout()
    path = out / "figures" / "vgg16_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table_rows(both: pd.DataFrame) -> list:
    lines = [
        "| optimizer | epoch | train loss ours | authors mean [min, max] | Δ | test acc ours | authors mean "
        "[min, max] | Δ | zeros % ours | authors mean | Δ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in both[both["epoch"].isin(TABLE_EPOCHS)].iterrows():
        cells = [r["optimizer"], str(r["epoch"])]
        for m, fmt in (("train_loss", ".3f"), ("test_acc", ".2f")):
            flag = "" if r[f"{m}_in_band"] else " **out**"
            cells += [
                f"{r[m]:{fmt}}",
                f"{r[f'{m}_mean']:{fmt}} [{r[f'{m}_min']:{fmt}}, {r[f'{m}_max']:{fmt}}]",
                f"{r[f'{m}_delta']:+{fmt}}{flag}",
            ]
        flag = "" if r["sparsity_within_1"] else " **out**"
        cells += [f"{r['sparsity']:.2f}", f"{r['sparsity_mean']:.2f}", f"{r['sparsity_delta']:+.2f}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(both: pd.DataFrame) -> list:
    lines = []
    for name, run in both.groupby("optimizer", sort=False):
        at = run[run["epoch"].isin(TABLE_EPOCHS)]
        misses = [
            f"{m.replace('_', ' ')} at {', '.join(map(str, at.loc[~at[f'{m}_in_band'], 'epoch']))}"
            for m in ("train_loss", "test_acc")
            if not at[f"{m}_in_band"].all()
        ]
        zeros_out = run.loc[~run["sparsity_within_1"], "epoch"].tolist()
        zeros = "within ±1 at every epoch" if not zeros_out else f"outside ±1 at epochs {zeros_out}"
        bands = "outside the band: " + "; ".join(misses) if misses else "inside the band at every table epoch reached"
        lines.append(
            f"- {name} (epochs 1–{run['epoch'].max()}): % zeros max |Δ| {run['sparsity_delta'].abs().max():.2f} "
            f"points ({zeros}); train loss and test accuracy {bands}."
        )
    return lines


def initial_weights(ours: pd.DataFrame) -> str:
    digests = ours.groupby("optimizer", sort=False)["initial_weights_sha256"].first()
    same = digests.nunique() == 1 and digests.notna().all()
    listing = ", ".join(f"{k} `{str(v)[:16]}…`" for k, v in digests.items())
    verdict = "the same for all runs: they start from the same weights" if same else "NOT the same for all runs"
    return f"Initial weights (sha256 of the state_dict before the first step): {listing} — {verdict}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", type=Path, default=ROOT / "results" / "cifar10_vgg16_curves.csv")
    parser.add_argument("--authors", type=Path, default=ROOT / "results" / "authors_vgg16_curves.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    ours, authors = load(args.ours, args.authors)
    both = compare(ours, authors)
    figure = draw(ours, authors, args.out)
    keep = ["optimizer", "epoch"] + [f"{m}{s}" for m in METRICS for s in ("", "_mean", "_min", "_max", "_delta")]
    both[both["epoch"].isin(TABLE_EPOCHS)][keep].to_csv(
        args.out / "cifar10_vgg16_table.csv", index=False, float_format="%.6g"
    )
    text = "\n".join(
        [
            "# VGG16 on CIFAR-10: ours beside the authors' logs, epoch by epoch",
            "",
            "Made by `make cifar-figure` from results/cifar10_vgg16_curves.csv (ours: `scripts/runs/cifar10_runs.py "
            "collect --setting vgg16`) and results/authors_vgg16_curves.csv (the authors' 9 repeats per setting). "
            "Δ = ours − their mean; **out**: outside their min–max band (train loss, test accuracy) or more than "
            "±1 point from their mean (% zeros).",
            "",
            *table_rows(both),
            "",
            "Targets:",
            "",
            *targets(both),
            "",
            initial_weights(ours),
            "",
            f"Figure: {figure.relative_to(args.out.parent)}",
            "",
        ]
    )
    (args.out / "cifar10_vgg16_table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
