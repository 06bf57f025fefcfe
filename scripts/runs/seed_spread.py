#!/usr/bin/env python
"""Mean and spread over seeds of a preset's gRDA and SGD runs: what a claim about the preset's result rests on.

    python scripts/runs/seed_spread.py [--experiment default] [--seeds 0-7] [--runs-dir runs]
        [--out results/seeds_default]

Runs `src/train.py experiment=E seed=S` for gRDA (the preset's optimizer) and `optim=sgd` at every seed (finished runs
are reused: the same command resumes or reports them complete), then writes OUT.csv (one row per run) and OUT.md
(mean, std, min and max per optimizer, and the per-seed gRDA-minus-SGD accuracy gap).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from src.launch import last_line, launch, read_summary  # noqa: E402

OPTIMIZERS = {"grda": [], "sgd": ["optim=sgd"]}


def seeds(text: str):
    if "-" in text:
        first, last = map(int, text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def run(args, seed: int, name: str, overrides) -> dict:
    run_dir = args.runs_dir / args.experiment / "seeds" / f"{name}_seed{seed}"
    proc = launch(f"experiment={args.experiment}", f"seed={seed}", *overrides, run_dir=run_dir, capture=True)
    if proc.returncode != 0:
        sys.exit(f"error: {name} seed {seed} failed (exit {proc.returncode}) in {run_dir}: {last_line(proc)}")
    s = read_summary(run_dir)
    return {"optimizer": name, "seed": seed, "test_acc": s["test_acc"], "sparsity": s["sparsity"]}


def describe(df: pd.DataFrame) -> str:
    stats = df.groupby("optimizer")[["test_acc", "sparsity"]].agg(["mean", "std", "min", "max"]).round(2)
    gap = df.pivot(index="seed", columns="optimizer", values="test_acc")
    gap = (gap["grda"] - gap["sgd"]).round(2)
    lines = ["| optimizer | test acc mean ± std (min–max) | sparsity mean ± std (min–max) |", "|---|---|---|"]
    for opt, row in stats.iterrows():
        acc, sp = row["test_acc"], row["sparsity"]
        lines.append(
            f"| {opt} | {acc['mean']:.2f} ± {acc['std']:.2f} ({acc['min']:.2f}–{acc['max']:.2f}) "
            f"| {sp['mean']:.2f} ± {sp['std']:.2f} ({sp['min']:.2f}–{sp['max']:.2f}) |"
        )
    lines += [
        "",
        "gRDA minus SGD test accuracy per seed (points): "
        + ", ".join(f"seed {s}: {g:+.2f}" for s, g in gap.items())
        + f"; mean {gap.mean():+.2f}, worst {gap.min():+.2f}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--seeds", type=seeds, default=seeds("0-7"))
    parser.add_argument("--runs-dir", type=lambda s: Path(s).expanduser().absolute(), default=ROOT / "runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "results" / f"seeds_{args.experiment}"
    rows = [run(args, seed, name, overrides) for seed in args.seeds for name, overrides in OPTIMIZERS.items()]
    df = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    command = (
        f"python scripts/runs/seed_spread.py --experiment {args.experiment} --seeds {args.seeds[0]}-{args.seeds[-1]}"
    )
    text = (
        f"# experiment={args.experiment}: gRDA and SGD over {len(args.seeds)} seeds\n\n"
        f"Command: `{command}` (test accuracy and sparsity in %, from each run's summary.json).\n\n"
        f"{describe(df)}\n"
    )
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
