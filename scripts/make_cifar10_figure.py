#!/usr/bin/env python
"""The authors' Keras-CNN CIFAR-10 figure from this harness's runs, with their read-off values beside ours.

    python scripts/make_cifar10_figure.py [--runs runs] [--out results]

Reads every finished or partial run of experiment=cifar10_keras_cnn (metrics.csv + summary/config), draws
test accuracy vs epoch and nonzero-weight ratio vs epoch to results/figures/, and writes
results/cifar10_keras_cnn.{md,csv} comparing epoch 10 (and the last epoch) with the authors' figure.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from src.results import PAPER  # noqa: E402

EXPERIMENT = "cifar10_keras_cnn"
ORDER = ["sgd", "sgd_momentum", "adagrad", "adam", "grda 0.3", "grda 0.51", "grda 0.7", "grda 1.0"]
NAMES = {"sgd": "SGD", "sgd_momentum": "SGD Nesterov", "adagrad": "Adagrad", "adam": "Adam"}


def label(cfg) -> str:
    if cfg.optim.name == "grda":
        return f"grda {cfg.optim.mu:g}"
    return cfg.optim.name


def pretty(key: str) -> str:
    return f"gRDA mu={key.split()[1]}" if key.startswith("grda") else NAMES.get(key, key)


def load_runs(runs_dir: Path) -> dict:
    """label -> metrics DataFrame (the longest run when several share a label)."""
    runs = {}
    for metrics in sorted((runs_dir / EXPERIMENT).rglob("metrics.csv")):
        config = metrics.parent / "config.yaml"
        if not config.is_file():
            continue
        cfg = OmegaConf.load(config)
        if cfg.experiment != EXPERIMENT or cfg.get("data", {}).get("train_subset"):
            continue
        df = pd.read_csv(metrics)
        df["run_dir"] = str(metrics.parent)
        key = label(cfg)
        if key not in runs or len(df) > len(runs[key]):
            runs[key] = df
    return runs


def paper_values() -> pd.DataFrame:
    paper = pd.read_csv(PAPER)
    paper = paper[paper["experiment"] == EXPERIMENT].copy()
    paper["key"] = [f"grda {mu:g}" if o == "grda" else o for o, mu in zip(paper["optimizer"], paper["mu"])]
    return paper.set_index("key")


def at_epoch(df: pd.DataFrame, epoch: int, column: str) -> float:
    row = df[df["epoch"] == epoch]
    return float(row[column].iloc[0]) if len(row) else math.nan


def draw(runs: dict, paper: pd.DataFrame, out: Path) -> list:
    keys = [k for k in ORDER if k in runs] + sorted(k for k in runs if k not in ORDER)
    paths = []
    for column, ylabel, name in (
        ("test_acc", "test accuracy", "acc_test"),
        ("nonzero_ratio", "nonzero weights (ratio)", "nonzero_weights"),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, key in enumerate(keys):
            df = runs[key]
            y = df[column] / 100.0 if column == "test_acc" else df[column]
            ax.plot(df["epoch"], y, label=pretty(key), color=f"C{i}", marker="o", markersize=3)
            if key in paper.index and column == "nonzero_ratio":
                p = paper.loc[key]
                ax.scatter([10, 100], [p["nonzero_ratio_e10"], p["nonzero_ratio_e100"]], color=f"C{i}", marker="x", s=50)
        if column == "nonzero_ratio":
            ax.scatter([], [], color="k", marker="x", label="authors' figure (read off)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        last = max(df["epoch"].max() for df in runs.values())
        ax.set_xlim(0, max(last, 10) + 1 if last < 50 else 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"Keras CNN on CIFAR-10, batch 10: {ylabel}")
        fig.tight_layout()
        path = out / f"{EXPERIMENT}_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def paper_acc(p, column: str, band: str) -> str:
    """The authors' value for this optimizer where the figure singles it out, else the band most curves lie in."""
    if p is not None and not pd.isna(p[column]) and "-" not in str(p[column]):
        return str(p[column])
    return band


def comparison(runs: dict, paper: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key in [k for k in ORDER if k in runs] + sorted(k for k in runs if k not in ORDER):
        df = runs[key]
        last = df.iloc[-1]
        p = paper.loc[key] if key in paper.index else None
        ours_nz10 = at_epoch(df, 10, "nonzero_ratio")
        paper_nz10 = p["nonzero_ratio_e10"] if p is not None else math.nan
        rows.append(
            {
                "optimizer": pretty(key),
                "epochs run": int(last["epoch"]),
                "test acc @10": at_epoch(df, 10, "test_acc") / 100.0,
                "paper test acc @10": paper_acc(p, "test_acc_e10", "0.65-0.70"),
                "nonzero @10": ours_nz10,
                "paper nonzero @10": paper_nz10,
                "Δ nonzero @10": ours_nz10 - paper_nz10,
                "test acc @last": float(last["test_acc"]) / 100.0,
                "nonzero @last": float(last["nonzero_ratio"]),
                "paper test acc @100": paper_acc(p, "test_acc_e100", "0.81-0.82"),
                "paper nonzero @100": p["nonzero_ratio_e100"] if p is not None else math.nan,
                "run": df["run_dir"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def fmt(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    runs = load_runs(Path(args.runs))
    if not runs:
        print(f"error: no {EXPERIMENT} runs under '{args.runs}'; run scripts/keras_cifar10_runs.sh first", file=sys.stderr)
        return 2
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    paper = paper_values()
    paths = draw(runs, paper, out / "figures")
    table = comparison(runs, paper)
    table.to_csv(out / f"{EXPERIMENT}.csv", index=False)
    cols = [c for c in table.columns if c != "run"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in table.iterrows()]
    (out / f"{EXPERIMENT}_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
