#!/usr/bin/env python
"""VGG16's test accuracy at a given train loss in the first epochs: is ours above the authors' for every optimizer?

    python scripts/analysis/acc_given_loss.py [--results results] [--out results]

A band check holds train loss and test accuracy apart; this holds them together. Per epoch of the authors' table
(results/authors_early_repeats.csv), a straight line test_acc = intercept + slope * train_loss is fitted by least
squares to all their VGG16 repeats of one epoch (SGD and gRDA at c 0.0005, every mu: 45 points), leaving out repeats
that predict one class for every image (test accuracy exactly 10.00 %: a collapsed run, off any line). Every run,
theirs and ours, then gets its residual: test accuracy minus the line's value at its train loss (points). If a
difference between our runs and theirs acted on test accuracy alone (the test images, the evaluation), our residuals
would sit above or below theirs for SGD and gRDA alike; if it acted through training, ours would move along the line.

Ours: every run in results/cifar10_vgg16_curves.csv and cifar10_vgg16_redraw_curves.csv, and the runs on the
quality-40 copy in cifar10_vgg16_q40_curves.csv (named "..., q40"), and the first machine's three main runs in
cifar10_vgg16_first_machine_curves.csv (named "..., first machine"), at the epochs of the authors' table.

Writes results/cifar10_vgg16_acc_given_loss.csv (one row per run and epoch, theirs and ours, with the fit),
results/cifar10_vgg16_acc_given_loss.md and results/figures/vgg16_acc_given_loss.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from scripts.analysis.lag_behind_sgd import C, our_curves, their_repeats  # noqa: E402

CHANCE = 10.0  # % test accuracy of a run that predicts one class for every CIFAR-10 image


def their_runs(results: Path) -> pd.DataFrame:
    early = their_repeats(results)
    return pd.DataFrame(
        {
            "source": "authors",
            "optimizer": ["SGD" if o == "sgd" else f"gRDA mu={m:g}" for o, m in zip(early["optimizer"], early["mu"])],
            "run": [f"repeat {r}" for r in early["repeat"]],
            "epoch": early["epoch"],
            "train_loss": early["train_loss"],
            "test_acc": early["test_acc"],
        }
    )


def our_runs(results: Path) -> pd.DataFrame:
    runs = our_curves(results)
    runs = runs[(runs["optimizer"] == "SGD") | (runs["c"] == C)]
    # one run in two files (the first machine's gRDA runs, still the main file's too) counts once, as the first file's
    runs = runs.drop_duplicates(["optimizer", "seed", "data_seed", "epoch", "train_loss", "test_acc"])
    return pd.DataFrame(
        {
            "source": "ours",
            "optimizer": runs["optimizer"],
            "run": runs["draw"],
            "epoch": runs["epoch"],
            "train_loss": runs["train_loss"],
            "test_acc": runs["test_acc"],
        }
    )


def residuals(theirs: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """Both, at the epochs both have, with each epoch's line (fitted to their non-collapsed repeats) and residual."""
    frames = []
    for epoch, group in theirs.groupby("epoch"):
        mine = ours[ours["epoch"] == epoch]
        if mine.empty:
            continue
        both = pd.concat([group, mine], ignore_index=True)
        both["collapsed"] = (both["source"] == "authors") & (both["test_acc"] <= CHANCE + 0.005)
        fitted = (both["source"] == "authors") & ~both["collapsed"]
        slope, intercept = np.polyfit(both.loc[fitted, "train_loss"], both.loc[fitted, "test_acc"], 1)
        both["predicted"] = intercept + slope * both["train_loss"]
        both["residual"] = both["test_acc"] - both["predicted"]
        sd = both.loc[fitted, "residual"].std(ddof=2)
        frames.append(both.assign(slope=slope, intercept=intercept, n_fit=int(fitted.sum()), residual_sd=sd))
    return pd.concat(frames, ignore_index=True)


def means(both: pd.DataFrame) -> pd.DataFrame:
    """Rows of mean residuals, per epoch: theirs per optimizer (collapsed repeats left out), ours on the usual copy."""
    theirs = both[(both["source"] == "authors") & ~both["collapsed"]]
    usual = both[(both["source"] == "ours") & ~both["run"].str.endswith("q40")].assign(optimizer="all")
    rows = []
    for source, frame, what in (("authors", theirs, "repeats"), ("ours", usual, "runs on the usual copy")):
        for (name, epoch), group in frame.groupby(["optimizer", "epoch"], sort=False):
            rows.append(
                {
                    "source": source,
                    "optimizer": name,
                    "run": f"mean of {len(group)} {what}",
                    "epoch": epoch,
                    "residual": group["residual"].mean(),
                    "n_mean": len(group),
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


def against_their_own(both: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Ours with residual_vs_theirs: the residual minus their mean residual for the same optimizer and epoch."""
    theirs = summary[summary["source"] == "authors"][["optimizer", "epoch", "residual"]]
    theirs = theirs.rename(columns={"residual": "their_mean_residual"})
    out = both.merge(theirs, on=["optimizer", "epoch"], how="left")
    out["residual_vs_theirs"] = (out["residual"] - out["their_mean_residual"]).where(out["source"] == "ours")
    return out.drop(columns="their_mean_residual")


def signed(value: float) -> str:
    return f"{0.0 if abs(value) < 0.005 else value:+.2f}"  # no "-0.00"


def markdown(both: pd.DataFrame, summary: pd.DataFrame, figure: str) -> str:
    epochs = sorted(both["epoch"].unique())
    fits = both.groupby("epoch").first()
    header = "| | " + " | ".join(f"epoch {e:g}" for e in epochs) + " |"
    rule = "|---|" + "---:|" * len(epochs)
    lines = [
        "# VGG16, CIFAR-10: test accuracy at a given train loss, theirs and ours",
        "",
        "Made by `python scripts/analysis/acc_given_loss.py` (its docstring says how). Per epoch, a line test "
        "accuracy = intercept + slope × train loss is fitted to the authors' repeats (SGD and gRDA c 0.0005, every mu; "
        "collapsed repeats at 10.00 % left out); a run's residual is its test accuracy minus the line's value at its "
        f"train loss, in points. Figure: `{figure}`.",
        "",
        "## The line, per epoch",
        "",
        header,
        rule,
        "| their repeats fitted | " + " | ".join(f"{int(fits.loc[e, 'n_fit'])}" for e in epochs) + " |",
        "| slope (points per unit of loss) | " + " | ".join(f"{fits.loc[e, 'slope']:.1f}" for e in epochs) + " |",
        "| intercept | " + " | ".join(f"{fits.loc[e, 'intercept']:.1f}" for e in epochs) + " |",
        "| residual sd of theirs | " + " | ".join(f"{fits.loc[e, 'residual_sd']:.2f}" for e in epochs) + " |",
        "",
        "## Residuals (points; positive: a higher test accuracy than their line gives at that train loss)",
        "",
        header,
        rule,
    ]

    def row(label: str, group: pd.DataFrame, column: str = "residual") -> str:
        at = group.set_index("epoch")[column]
        return f"| {label} | " + " | ".join(signed(at[e]) if e in at else "–" for e in epochs) + " |"

    for name, group in summary[summary["source"] == "authors"].groupby("optimizer", sort=False):
        lines.append(row(f"theirs, {name}: mean of the repeats", group))
    for (name, run), group in both[both["source"] == "ours"].groupby(["optimizer", "run"], sort=False):
        lines.append(row(f"ours, {name} ({run})", group))
    lines.append(row("ours on the usual copy: mean", summary[summary["source"] == "ours"]))
    counts = summary[summary["source"] == "ours"].set_index("epoch")["n_mean"]
    lines += ["", "Runs in that mean, per epoch: " + ", ".join(f"{e:g}: {counts[e]}" for e in epochs) + "."]
    lines += [
        "",
        "## Against their repeats of the same optimizer (points: our residual minus their mean residual above)",
        "",
        header,
        rule,
    ]
    for (name, run), group in both[both["source"] == "ours"].groupby(["optimizer", "run"], sort=False):
        lines.append(row(f"ours, {name} ({run})", group, "residual_vs_theirs"))
    return "\n".join(lines) + "\n"


def draw(both: pd.DataFrame, path: Path) -> None:
    epochs = sorted(both["epoch"].unique())
    fig, axes = plt.subplots(1, len(epochs), figsize=(4 * len(epochs), 3.8), squeeze=False)
    names = list(dict.fromkeys(both["optimizer"]))
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    for ax, epoch in zip(axes[0], epochs):
        at = both[both["epoch"] == epoch]
        xs = np.linspace(at["train_loss"].min(), at["train_loss"].max(), 2)
        ax.plot(xs, at["intercept"].iloc[0] + at["slope"].iloc[0] * xs, "k-", lw=0.8, label="their line")
        for (source, name), group in at.groupby(["source", "optimizer"], sort=False):
            q40 = group["run"].str.endswith("q40")
            style = dict(color=colours[name], s=22 if source == "authors" else 60)
            if source == "authors":
                ax.scatter(
                    group["train_loss"], group["test_acc"], marker="o", alpha=0.45, label=f"{name} (authors)", **style
                )
            else:
                ax.scatter(
                    group.loc[~q40, "train_loss"],
                    group.loc[~q40, "test_acc"],
                    marker="*",
                    label=f"{name} (ours)",
                    **style,
                )
                if q40.any():
                    ax.scatter(group.loc[q40, "train_loss"], group.loc[q40, "test_acc"], marker="x", **style)
        ax.set_title(f"epoch {epoch:g}")
        ax.set_xlabel("train loss")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("VGG16, CIFAR-10: test accuracy against train loss (authors: dots; ours: stars; ours on JPEG q40: x)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="where the input CSVs are")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    both = residuals(their_runs(args.results), our_runs(args.results))
    summary = means(both)
    both = against_their_own(both, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.concat([both, summary], ignore_index=True).to_csv(
        args.out / "cifar10_vgg16_acc_given_loss.csv", index=False, float_format="%.6g"
    )
    figure = Path("figures") / "vgg16_acc_given_loss.png"
    draw(both, args.out / figure)
    text = markdown(both, summary, f"results/{figure.as_posix()}")
    (args.out / "cifar10_vgg16_acc_given_loss.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
