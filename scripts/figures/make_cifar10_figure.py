#!/usr/bin/env python
"""Our Keras-CNN CIFAR-10 curves on the same axes as the authors' figure, and a table of the differences.

    python scripts/figures/make_cifar10_figure.py [--ours results/cifar10_keras_cnn_curves.csv]
                                          [--authors results/authors_keras_cnn_curves.csv] [--out results]

Reads the committed per-epoch CSVs only (no runs needed): ours from `scripts/runs/cifar10_runs.py collect`
(optimizer,epoch,test_acc,nonzero_ratio), the authors' digitised from `scripts/authors/digitize_authors_figure.py`
(figure,optimizer,epoch,value). Writes results/figures/cifar10_keras_cnn_{acc_test,nonzero_weights}.png (solid: ours
in the figure's setting; dashed: the authors'; dotted: ours with the accumulator starting at the weights; thin:
ours, other seeds) and results/cifar10_keras_cnn_table.{md,csv}: both at epochs 1, 5, 10, 20, 30 (50, 99 where
reached), the deltas, the issue's targets (nonzero ratio within 0.03 at every epoch; test accuracy within 0.03 at
epochs 10, 20, 30) and the spread between runs of the same optimizer (ours: seeds; the authors': SGD and their
"SGD Nesterov", which is plain SGD).
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
EXPERIMENT = "cifar10_keras_cnn"
# The authors' legend order and colours (their figure's)
COLOURS = {
    "SGD": "turquoise",
    "SGD Nesterov": "brown",
    "gRDA mu=0.3": "blue",
    "gRDA mu=0.51": "orange",
    "gRDA mu=0.7": "green",
    "gRDA mu=1.0": "red",
    "Adam": "gold",
    "Adagrad": "black",
}
WEIGHTS = " (weights)"  # label suffix of our runs with the accumulator starting at the weights
SEED = " (seed "  # label infix of our extra draws, e.g. "SGD (seed 2)"
# Runs of the same optimizer: Keras' SGD(nesterov=True) with its default momentum 0 is plain SGD
DRAWS = {"SGD": ["SGD", "SGD Nesterov"], "Adam": ["Adam"]}
TABLE_EPOCHS = [1, 5, 10, 20, 30, 50, 99]  # 99: the authors' last plotted point (their x axis: 1, 3, ..., 99)
ACC_EPOCHS = [10, 20, 30]
TOLERANCE = 0.03
FIGURES = {"test_acc": ("test accuracy", "acc_test"), "nonzero_ratio": ("nonzero weight ratio", "nonzero_weights")}


def load(ours_path: Path, authors_path: Path):
    for path, maker in (
        (ours_path, "scripts/runs/cifar10_runs.py collect"),
        (authors_path, "scripts/authors/digitize_authors_figure.py"),
    ):
        if not path.is_file():
            sys.exit(f"error: '{path}' not found; it is committed in results/ (or made by {maker})")
    ours = pd.read_csv(ours_path)
    authors = pd.read_csv(authors_path).pivot_table(index=["optimizer", "epoch"], columns="figure", values="value")
    return ours, authors.reindex(columns=list(FIGURES)).reset_index()  # both columns, even with no gRDA curve


def value(df: pd.DataFrame, optimizer: str, epoch: int, column: str) -> float:
    row = df[(df["optimizer"] == optimizer) & (df["epoch"] == epoch)]
    return float(row[column].iloc[0]) if len(row) and column in row and pd.notna(row[column].iloc[0]) else float("nan")


def draw(ours: pd.DataFrame, authors: pd.DataFrame, out: Path) -> list:
    paths = []
    for column, (ylabel, name) in FIGURES.items():
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for label, colour in COLOURS.items():
            if column == "nonzero_ratio" and not label.startswith("gRDA"):
                continue
            theirs = authors[authors["optimizer"] == label].dropna(subset=[column])
            ax.plot(theirs["epoch"], theirs[column], "--", color=colour, lw=1.2, alpha=0.8, label=label)
            for suffix, style in (("", "-"), (WEIGHTS, ":")):
                mine = ours[ours["optimizer"] == label + suffix]
                if len(mine):
                    ax.plot(mine["epoch"], mine[column], style, color=colour, lw=1.8, marker="o", markersize=2.5)
            for seed_label in [o for o in ours["optimizer"].unique() if o.startswith(label + SEED)]:
                mine = ours[ours["optimizer"] == seed_label]
                ax.plot(mine["epoch"], mine[column], "-", color=colour, lw=0.8, alpha=0.5)
        ax.plot([], [], "k-", marker="o", markersize=2.5, label="ours (figure's setting)")
        ax.plot([], [], "k:", label="ours, accumulator at the weights")
        if ours["optimizer"].str.contains(SEED, regex=False).any():
            ax.plot([], [], "k-", lw=0.8, alpha=0.5, label="ours, other seeds")
        ax.plot([], [], "k--", label="authors' figure (digitised)")
        ax.set_xlabel("epochs")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"Keras CNN on CIFAR-10 (batch 10): {ylabel}")
        fig.tight_layout()
        path = out / f"{EXPERIMENT}_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def table(ours: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for label in ours["optimizer"].unique():
        base = label.split(" (")[0]  # "gRDA mu=0.3 (weights)", "SGD (seed 2)": compared with the same authors' curve
        last = int(ours.loc[ours["optimizer"] == label, "epoch"].max())
        for epoch in [e for e in TABLE_EPOCHS if e <= last]:
            row = {"optimizer": label, "epoch": epoch}
            for column in FIGURES:
                mine, theirs = value(ours, label, epoch, column), value(authors, base, epoch, column)
                row.update({f"{column} ours": mine, f"{column} authors": theirs, f"{column} Δ": mine - theirs})
            rows.append(row)
    return pd.DataFrame(rows)


def targets(ours: pd.DataFrame, authors: pd.DataFrame) -> list:
    """One line per optimizer of the figure's setting: the largest deviation from the authors' curve."""
    lines = []
    merged = ours.merge(authors, on=["optimizer", "epoch"], suffixes=("", "_authors"))
    for label in COLOURS:
        epochs = ours.loc[ours["optimizer"] == label, "epoch"]
        if epochs.empty:
            continue
        parts = [f"**{label}** (epochs 1–{int(epochs.max())})"]
        if label.startswith("gRDA"):
            mine = merged[merged["optimizer"] == label]
            d = (mine["nonzero_ratio"] - mine["nonzero_ratio_authors"]).dropna()
            worst = d.abs().idxmax()
            outside = int((d.abs() > TOLERANCE).sum())
            parts.append(
                f"nonzero ratio: max |Δ| {abs(d[worst]):.3f} at epoch {int(mine.loc[worst, 'epoch'])} "
                + (
                    f"(within ±{TOLERANCE} at all {len(d)} epochs)"
                    if not outside
                    else f"(OUTSIDE ±{TOLERANCE} at {outside} of {len(d)} epochs)"
                )
            )
        accs = []
        for epoch in ACC_EPOCHS:
            d = value(ours, label, epoch, "test_acc") - value(authors, label, epoch, "test_acc")
            if d == d:
                accs.append(f"epoch {epoch} Δ {d:+.3f}{'' if abs(d) <= TOLERANCE else ' (OUTSIDE)'}")
        parts.append("test accuracy: " + ("; ".join(accs) if accs else "not yet at epoch 10"))
        lines.append("- " + " — ".join(parts))
    return lines


def spread(ours: pd.DataFrame, authors: pd.DataFrame) -> list:
    """Per optimizer with several of our runs: their test accuracies at the target epochs, beside the authors'."""
    lines = []
    for name, figure_labels in DRAWS.items():
        labels = [x for x in ours["optimizer"].unique() if x in figure_labels or x.startswith(name + SEED)]
        parts = []
        for epoch in ACC_EPOCHS:
            mine = [v for v in (value(ours, x, epoch, "test_acc") for x in labels) if v == v]
            theirs = [v for v in (value(authors, x, epoch, "test_acc") for x in figure_labels) if v == v]
            if len(mine) >= 2:
                parts.append(
                    f"epoch {epoch}: ours {min(mine):.3f}–{max(mine):.3f} ({len(mine)} runs, spread "
                    f"{max(mine) - min(mine):.3f}), authors' " + " / ".join(f"{v:.3f}" for v in theirs)
                )
        if parts:
            lines.append(f"- **{name}** ({', '.join(labels)}): " + "; ".join(parts))
    return lines


def markdown(df: pd.DataFrame) -> str:
    head = ["optimizer", "epoch", "test acc ours", "authors", "Δ", "nonzero ours", "authors", "Δ"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, sign="": "–" if v != v else f"{v:{sign}.3f}"  # noqa: E731
    for _, r in df.iterrows():
        cells = [
            r["optimizer"],
            str(r["epoch"]),
            fmt(r["test_acc ours"]),
            fmt(r["test_acc authors"]),
            fmt(r["test_acc Δ"], "+"),
            fmt(r["nonzero_ratio ours"]),
            fmt(r["nonzero_ratio authors"]),
            fmt(r["nonzero_ratio Δ"], "+"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", type=Path, default=ROOT / "results" / f"{EXPERIMENT}_curves.csv")
    parser.add_argument("--authors", type=Path, default=ROOT / "results" / "authors_keras_cnn_curves.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    ours, authors = load(args.ours, args.authors)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    paths = draw(ours, authors, args.out / "figures")
    df = table(ours, authors)
    df.to_csv(args.out / f"{EXPERIMENT}_table.csv", index=False, float_format="%.4f")
    text = (
        "# Keras CNN on CIFAR-10: ours beside the authors' figure, epoch by epoch\n\n"
        "Made by `make cifar10-figure` from results/cifar10_keras_cnn_curves.csv (ours) and "
        "results/authors_keras_cnn_curves.csv (the authors' figure, digitised; reading error in "
        "results/authors_keras_cnn_curves.md). Test accuracy as a fraction; Δ = ours − authors. Rows labelled "
        "(weights) are ours with the accumulator starting at the weights, rows labelled (seed N) more runs of the same "
        "optimizer; both are compared with the same authors' curve. The authors plotted odd epochs (1, 3, …, 99): at "
        "even epochs (10, 20, 30, 50) their value is read on the straight line drawn between two plotted points.\n\n"
        f"## Targets (±{TOLERANCE})\n\n" + "\n".join(targets(ours, authors)) + "\n"
    )
    runs_of_one = spread(ours, authors)
    if runs_of_one:
        text += "\n## Runs of the same optimizer\n\n" + "\n".join(runs_of_one) + "\n"
    text += "\n## Table\n\n" + markdown(df) + "\n"
    (args.out / f"{EXPERIMENT}_table.md").write_text(text)
    print(text)
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
