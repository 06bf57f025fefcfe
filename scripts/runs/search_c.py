#!/usr/bin/env python
"""Automatic c search, as the authors advise: fix mu, find the largest c that keeps test accuracy.

    python scripts/runs/search_c.py [--experiment default] [--mu 0.51] [--c-min 1e-4] [--c-max 1e-1] [--num 7]
                               [--epochs 3] [--tolerance 1.0] [--out results/search_c] [-- HYDRA_OVERRIDES...]

Runs ONE Hydra multirun (`src/train.py -m ... optim.c=0,c_1,...,c_num`) over a geometric grid of c plus
the c = 0 baseline (plain SGD), each for --epochs epochs (the authors: 1-5), then reports the largest c
whose test accuracy is within --tolerance points of the baseline, with a table and a plot of accuracy and
sparsity against c. Finished jobs are reused when the command is run again (same sweep directory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.launch import finished_runs, read_config, read_summary, train_command  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def grid(c_min: float, c_max: float, num: int) -> list:
    return [0.0] + [float(f"{c:.3g}") for c in np.geomspace(c_min, c_max, num)]


def run_sweep(args, cs: list, sweep_dir: Path) -> None:
    cmd = train_command(
        f"experiment={args.experiment}",
        "optim=grda",
        f"optim.mu={args.mu}",
        "optim.c=" + ",".join(f"{c:g}" for c in cs),
        f"trainer.epochs={args.epochs}",
        f"hydra.sweep.dir={sweep_dir}",
        *args.overrides,
        multirun=True,
    )
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)


def read_sweep(sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for run in finished_runs(sweep_dir):
        c, s = float(read_config(run).optim.c), read_summary(run)
        rows.append(
            {"c": c, "test_acc": s["test_acc"], "sparsity": s["sparsity"], "epochs": s["epochs"], "run_dir": str(run)}
        )
    return pd.DataFrame(rows).sort_values("c").reset_index(drop=True)


def choose(df: pd.DataFrame, tolerance: float):
    baseline = df.loc[df["c"] == 0, "test_acc"]
    if baseline.empty:
        raise SystemExit("error: the c = 0 baseline run is missing from the sweep")
    base = float(baseline.iloc[0])
    ok = df[(df["c"] > 0) & (df["test_acc"] >= base - tolerance)]
    return base, (None if ok.empty else ok.iloc[-1])


def plot(df: pd.DataFrame, base: float, best, args, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    nz = df[df["c"] > 0]
    ax.semilogx(nz["c"], nz["test_acc"], "o-", color="C0", label="test accuracy")
    ax.axhline(base, color="C0", ls=":", label="c = 0 (SGD) accuracy")
    ax.axhspan(base - args.tolerance, base, color="C0", alpha=0.08)
    ax.set_xlabel("c")
    ax.set_ylabel("test accuracy (%)", color="C0")
    ax2 = ax.twinx()
    ax2.semilogx(nz["c"], nz["sparsity"], "s--", color="C1", label="sparsity")
    ax2.set_ylabel("sparsity (%)", color="C1")
    if best is not None:
        ax.axvline(best["c"], color="k", lw=0.8)
        ax.set_title(f"{args.experiment}, mu={args.mu}, {args.epochs} epochs: largest c = {best['c']:g}")
    else:
        ax.set_title(f"{args.experiment}, mu={args.mu}: no c within {args.tolerance} points")
    fig.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--mu", type=float, default=0.51)
    parser.add_argument("--c-min", type=float, default=1e-4)
    parser.add_argument("--c-max", type=float, default=1e-1)
    parser.add_argument("--num", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1.0, help="accuracy points below the c = 0 baseline")
    parser.add_argument("--out", default="results/search_c")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. data.root=PATH")
    args = parser.parse_args()
    if not (0 < args.c_min < args.c_max) or args.num < 1 or args.epochs < 1:
        print("error: need 0 < --c-min < --c-max, --num >= 1 and --epochs >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    name = f"{args.experiment}_mu{args.mu:g}_e{args.epochs}"
    sweep_dir = (Path("runs") / "search_c" / name).absolute()
    cs = grid(args.c_min, args.c_max, args.num)
    run_sweep(args, cs, sweep_dir)
    df = read_sweep(sweep_dir)
    df = df[df["c"].isin(cs)]
    base, best = choose(df, args.tolerance)
    out.mkdir(parents=True, exist_ok=True)
    df.drop(columns="run_dir").to_csv(out / f"{name}.csv", index=False)
    plot(df, base, best, args, out / f"{name}.png")
    lines = [
        f"# c search: {args.experiment}, mu={args.mu:g}, {args.epochs} epochs, tolerance {args.tolerance} points",
        "",
        "| c | test acc % | Δ vs c=0 | sparsity % |",
        "|---:|---:|---:|---:|",
    ]
    for _, r in df.iterrows():
        lines.append(f"| {r['c']:g} | {r['test_acc']:.2f} | {r['test_acc'] - base:+.2f} | {r['sparsity']:.2f} |")
    verdict = (
        f"Largest c within {args.tolerance} points of c = 0: **{best['c']:g}** "
        f"({best['test_acc']:.2f} % vs {base:.2f} %, {best['sparsity']:.2f} % sparse)."
        if best is not None
        else f"No c > 0 within {args.tolerance} points of c = 0 ({base:.2f} %)."
    )
    lines += ["", verdict]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
