#!/usr/bin/env python
"""Our WRN-28-10 runs (finished or partial) on top of the authors' per-epoch curves, epoch by epoch.

    python scripts/figures/make_wrn_figure.py [--runs runs] [--authors results/authors_wrn_curves.csv] [--out results]

The authors' curves are the mean and min–max band over their 10 runs per setting (results/authors_wrn_curves.csv,
from their logs). Ours: every run of experiment=cifar10_wrn28x10 / cifar100_wrn28x10 under --runs with a metrics.csv,
matched to the authors' setting by optimizer and mu. Writes results/figures/wrn_curves_<dataset>.png and
results/wrn_curves_table.md (ours beside the authors' mean at epochs 1, 2, 5, 10, 50, 100, 200 where reached).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = {"cifar10_wrn28x10": "cifar10", "cifar100_wrn28x10": "cifar100"}
TABLE_EPOCHS = [1, 2, 5, 10, 50, 100, 200]


def setting(optimizer: str, mu) -> str:
    return f"gRDA mu={float(mu):g}" if optimizer == "grda" else optimizer.upper()


def load_ours(runs_dir: Path) -> pd.DataFrame:
    frames = []
    for metrics in sorted(Path(runs_dir).rglob("metrics.csv")):
        config = metrics.parent / "config.yaml"
        if not config.is_file():
            continue
        cfg = OmegaConf.load(config)
        if cfg.get("experiment") not in EXPERIMENTS:
            continue
        df = pd.read_csv(metrics)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": EXPERIMENTS[cfg.experiment],
                    "setting": setting(cfg.optim.name, cfg.optim.get("mu")),
                    "run": str(metrics.parent),
                    "epoch": df["epoch"],
                    "test_acc": df["test_acc"],
                    "sparsity": df["sparsity"],
                }
            )
        )
    columns = ["dataset", "setting", "run", "epoch", "test_acc", "sparsity"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def load_authors(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["setting"] = [setting(o, m) for o, m in zip(df["optimizer"], df["mu"])]
    return df


def draw(authors: pd.DataFrame, ours: pd.DataFrame, dataset: str, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    theirs = authors[authors["dataset"] == dataset]
    mine = ours[ours["dataset"] == dataset]
    for i, (name, group) in enumerate(theirs.groupby("setting", sort=True)):
        colour = f"C{i}"
        for ax, column in zip(axes, ("test_acc", "sparsity")):
            if group[f"{column}_mean"].isna().all():
                continue
            ax.plot(group["epoch"], group[f"{column}_mean"], "--", color=colour, lw=1, label=f"{name} (authors, mean)")
            ax.fill_between(group["epoch"], group[f"{column}_min"], group[f"{column}_max"], color=colour, alpha=0.15)
            for _, run in mine[mine["setting"] == name].groupby("run"):
                ax.plot(run["epoch"], run[column], "-", color=colour, lw=1.8, label=f"{name} (ours)")
    for ax, label in zip(axes, ("test accuracy (%)", "zeros over all parameters (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"WRN-28-10 on {dataset.upper()}: ours (solid) vs the authors' 10 runs (dashed: mean, band: min–max)")
    fig.tight_layout()
    path = out / f"wrn_curves_{dataset}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(authors: pd.DataFrame, ours: pd.DataFrame) -> str:
    lines = [
        "| dataset | setting | run | epoch | test acc ours | authors (mean ± std) | zeros % ours | authors |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for _, row in ours[ours["epoch"].isin(TABLE_EPOCHS)].iterrows():
        a = authors[
            (authors["dataset"] == row["dataset"])
            & (authors["setting"] == row["setting"])
            & (authors["epoch"] == row["epoch"])
        ]
        acc = f"{a['test_acc_mean'].iloc[0]:.2f} ± {a['test_acc_std'].iloc[0]:.2f}" if len(a) else "–"
        zeros = f"{a['sparsity_mean'].iloc[0]:.2f}" if len(a) and pd.notna(a["sparsity_mean"].iloc[0]) else "–"
        lines.append(
            f"| {row['dataset']} | {row['setting']} | {Path(row['run']).name} | {row['epoch']} | "
            f"{row['test_acc']:.2f} | {acc} | {row['sparsity']:.2f} | {zeros} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--authors", type=Path, default=ROOT / "results" / "authors_wrn_curves.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if not args.authors.is_file():
        print(
            f"error: '{args.authors}' not found (make it with scripts/authors/authors_wrn_curves.py)", file=sys.stderr
        )
        return 2
    authors, ours = load_authors(args.authors), load_ours(args.runs)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    paths = [draw(authors, ours, d, args.out / "figures") for d in EXPERIMENTS.values()]
    note = (
        "no WRN runs found under " + str(args.runs) + ": the figures show the authors' curves only"
        if ours.empty
        else f"{ours['run'].nunique()} of our runs"
    )
    text = (
        f"# WRN-28-10: ours beside the authors' logs, epoch by epoch\n\nMade by `make cifar-figure` ({note}). "
        f"Authors: results/authors_wrn_curves.csv (mean ± std over their 10 runs).\n\n{table(authors, ours)}\n"
    )
    (args.out / "wrn_curves_table.md").write_text(text)
    print(text)
    print("wrote", ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
