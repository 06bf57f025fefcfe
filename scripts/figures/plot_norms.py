#!/usr/bin/env python
"""The paper's Figure 2: log(||w||_2 / ||w||_1) per epoch, from runs' metrics.csv.

    python scripts/figures/plot_norms.py RUN_DIR [RUN_DIR ...] [--out results/figures/norm_ratio.png]

The ratio grows as weight mass concentrates on few entries: gRDA's curve rises as it prunes, SGD's stays
flat. Each run is labelled by its optimizer (and mu, c) from its config.yaml.
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


def label(run_dir: Path) -> str:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if cfg.optim.name == "grda":
        return f"gRDA mu={cfg.optim.mu:g} c={cfg.optim.c:g}"
    if cfg.get("prune", {}).get("name", "none") == "gmp":
        return f"{cfg.optim.name} + GMP {cfg.prune.final_sparsity:g}"
    return cfg.optim.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", default="results/figures/norm_ratio.png")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for run in args.runs:
        metrics = run / "metrics.csv"
        if not metrics.is_file() or not (run / "config.yaml").is_file():
            print(f"error: '{run}' is not a run directory (no metrics.csv/config.yaml)", file=sys.stderr)
            return 2
        df = pd.read_csv(metrics)
        if "log_l2_l1" not in df:
            print(f"error: '{metrics}' has no log_l2_l1 column (a run from an older version)", file=sys.stderr)
            return 2
        ax.plot(df["epoch"], df["log_l2_l1"], marker="o", markersize=3, label=label(run))
    ax.set_xlabel("epoch")
    ax.set_ylabel("log(||w||_2 / ||w||_1)")
    ax.set_title("weight concentration (paper Figure 2)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
