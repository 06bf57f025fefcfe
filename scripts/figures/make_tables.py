#!/usr/bin/env python
"""Build results/<name>_table.{md,csv}: the authors' numbers beside ours from finished runs.

python scripts/figures/make_tables.py imagenet [--runs runs] [--out results]
python scripts/figures/make_tables.py cifar
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src.results import comparison_table, to_markdown  # noqa: E402

TABLES = {
    "imagenet": (
        ["imagenet_resnet50"],
        "ResNet-50 on ImageNet: paper vs this harness",
        "Paper: Chao et al. 2020 (single runs). Ours: mean over finished runs in the runs directory. Sparsity: % exact "
        "zeros over all 25,557,032 parameters. File MB: checkpoint size (model + optimizer, like the authors' files); "
        "sparse export MB: the final weights with zeros not stored (model.sparse.safetensors).",
    ),
    "cifar": (
        ["cifar100_wrn28x10", "cifar10_wrn28x10", "cifar10_vgg16"],
        "WRN-28-10 on CIFAR-100 and CIFAR-10, VGG16 on CIFAR-10: paper vs this harness",
        "Paper: Chao et al. 2020 and the authors' logs (WRN: means over 10 runs; VGG16: over 9; sources in "
        "results/paper_results.csv). Ours: mean over finished runs (seeds) in the runs directory.",
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--runs", default="runs", help="directory holding run directories (default: runs)")
    parser.add_argument("--out", default="results", help="output directory (default: results)")
    args = parser.parse_args()
    experiments, title, note = TABLES[args.table]
    df = comparison_table(experiments, Path(args.runs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{args.table}_table.csv", index=False)
    (out / f"{args.table}_table.md").write_text(to_markdown(df, title, note))
    done = int((df["status"] == "done").sum())
    print(f"{out / f'{args.table}_table.md'}: {done} of {len(df)} settings have finished runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
