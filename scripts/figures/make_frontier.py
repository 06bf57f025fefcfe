#!/usr/bin/env python
"""Test accuracy against sparsity for gRDA (several mu/c) and gradual magnitude pruning, in one figure.

    python scripts/figures/make_frontier.py [--experiment default] [--runs runs] [--out results]

Reads every finished run of the experiment (summary.json + config.yaml): gRDA runs (optim=grda),
GMP runs (prune=gmp) and plain baselines; writes results/frontier_<experiment>.{png,csv,md}. The
authors' ResNet-50 points (results/paper_frontier.csv) are drawn for experiment=imagenet_resnet50.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from src.results import REPO, collect_runs  # noqa: E402


def method(row) -> str:
    if row["prune"] == "gmp":
        return f"GMP ({row['optimizer']})"
    if row["optimizer"] == "grda":
        return "gRDA"
    return row["optimizer"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    runs = collect_runs(Path(args.runs), args.experiment)
    runs = runs[runs["finished"]] if not runs.empty else runs
    if runs.empty:
        print(f"error: no finished {args.experiment} runs under '{args.runs}'", file=sys.stderr)
        return 2
    runs = runs.assign(method=runs.apply(method, axis=1)).sort_values(["method", "sparsity"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "optimizer", "lr", "c", "mu", "final_sparsity", "epoch", "sparsity", "test_acc", "seed"]
    runs[cols].to_csv(out / f"frontier_{args.experiment}.csv", index=False)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, group) in enumerate(runs.groupby("method", sort=True)):
        style = "-o" if len(group) > 1 else "o"
        ax.plot(group["sparsity"], group["test_acc"], style, color=f"C{i}", label=name)
        if name == "gRDA":
            for _, r in group.iterrows():
                ax.annotate(
                    f"mu={r['mu']:g}, c={r['c']:g}",
                    (r["sparsity"], r["test_acc"]),
                    fontsize=6,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
    paper_file = REPO / "results" / "paper_frontier.csv"
    paper = pd.read_csv(paper_file)
    paper = paper[paper["experiment"] == args.experiment]
    for _, r in paper.iterrows():
        ax.plot(r["sparsity"], r["test_acc"], "kx")
        ax.annotate(
            f"paper: {r['method']}",
            (r["sparsity"], r["test_acc"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(3, -9),
        )
    ax.set_xlabel("sparsity (% exact zeros, all parameters)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"accuracy vs sparsity: {args.experiment}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"frontier_{args.experiment}.png", dpi=120)
    lines = ["| method | mu | c | GMP target | sparsity % | test acc % |", "|---|---:|---:|---:|---:|---:|"]
    for _, r in runs.iterrows():
        fmt = lambda v: "–" if pd.isna(v) else f"{v:g}"  # noqa: E731
        lines.append(
            f"| {r['method']} | {fmt(r['mu'])} | {fmt(r['c'])} | {fmt(r['final_sparsity'])} | "
            f"{r['sparsity']:.2f} | {r['test_acc']:.2f} |"
        )
    (out / f"frontier_{args.experiment}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / f'frontier_{args.experiment}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
