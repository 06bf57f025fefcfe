#!/usr/bin/env python
"""Our curves over the authors' band, epoch by epoch, and the table of the differences: VGG16 or WRN-28-10 on
CIFAR-10, the presets trained here from their first epoch.

    python scripts/figures/make_band_figure.py [--model vgg16|wrn28x10] [--ours CSV] [--authors CSV] [--out results]

Reads the committed per-epoch CSVs only (no runs needed): ours from `scripts/runs/cifar10_runs.py collect
--setting vgg16|wrn` (results/cifar10_vgg16_curves.csv, results/cifar10_wrn28x10_curves.csv), the authors' (mean /
std / min / max over their repeats: the 9 their VGG16 notebook draws, the 10 WRN runs) from
`scripts/authors/authors_wrn_curves.py`. Writes results/figures/<figure> (train loss, test accuracy and % zeros; ours
solid, the authors' mean dashed, their min–max band shaded) and results/<preset>_table.{md,csv}: ours beside theirs
at the table's epochs (where reached) with the deltas and the issue's targets — % zeros within ±1 point of their
mean at every epoch; train loss and test accuracy inside their min–max band at the table's epochs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ZEROS_TOLERANCE = 1.0  # points of % zeros
METRICS = {"train_loss": "train loss", "test_acc": "test accuracy (%)", "sparsity": "zeros over all parameters (%)"}


@dataclass(frozen=True)
class Study:
    """One preset trained here beside the authors' logged runs of it."""

    preset: str  # the experiment; also the stem of our curves and of the table
    title: str
    model: str  # the authors' CSV's model column
    c: float  # the gRDA c of the authors' runs compared
    authors_csv: str
    repeats: int
    setting: str  # scripts/runs/cifar10_runs.py's --setting
    table_epochs: List[int]
    figure: str
    hyper: str  # how the authors ran it, for the figure's title

    @property
    def ours_csv(self) -> str:
        return f"{self.preset}_curves.csv"


STUDIES = {
    "vgg16": Study(
        "cifar10_vgg16",
        "VGG16 on CIFAR-10",
        "vgg16",
        0.0005,
        "authors_vgg16_curves.csv",
        9,
        "vgg16",
        [1, 2, 3, 5, 10, 15, 20],
        "vgg16_curves.png",
        "lr 0.1, batch 128, c 0.0005",
    ),
    "wrn28x10": Study(
        "cifar10_wrn28x10",
        "WRN-28-10 on CIFAR-10",
        "wrn28x10",
        0.001,
        "authors_wrn_curves.csv",
        10,
        "wrn",
        [1, 2, 3, 5, 10],
        "wrn28x10_cifar10_first_epochs.png",
        "lr 0.1, batch 128, c 0.001",
    ),
}
VGG16 = STUDIES["vgg16"]


def label(optimizer: str, mu) -> str:
    return f"gRDA mu={float(mu):g}" if optimizer == "grda" else "SGD"


def load(ours_path: Path, authors_path: Path, study: Study = VGG16):
    for path, maker in (
        (ours_path, f"scripts/runs/cifar10_runs.py collect --setting {study.setting}"),
        (authors_path, "scripts/authors/authors_wrn_curves.py"),
    ):
        if not path.is_file():
            sys.exit(f"error: '{path}' not found; it is committed in results/ (or made by {maker})")
    ours = pd.read_csv(ours_path)
    authors = read_authors(authors_path, study)
    return ours, authors[authors["optimizer"].isin(ours["optimizer"].unique())]


def read_authors(authors_path: Path, study: Study = VGG16) -> pd.DataFrame:
    """The authors' curves of the study's model: SGD and gRDA at the study's c, named as our runs are."""
    authors = pd.read_csv(authors_path)
    authors = authors[(authors["dataset"] == "cifar10") & (authors["model"] == study.model)]
    authors = authors[(authors["optimizer"] == "sgd") | (authors["c"] == study.c)]
    return authors.assign(optimizer=[label(o, m) for o, m in zip(authors["optimizer"], authors["mu"])])


def compare(ours: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch: ours, their mean / min / max, the delta and whether ours is inside."""
    both = ours.merge(authors, on=["optimizer", "epoch"], how="left")
    for m in METRICS:
        both[f"{m}_delta"] = both[m] - both[f"{m}_mean"]
        both[f"{m}_in_band"] = (both[m] >= both[f"{m}_min"]) & (both[m] <= both[f"{m}_max"])
    # The authors' WRN SGD logs carry no sparsity column: SGD makes no exact zeros, so ours must have none.
    unlogged = both["sparsity_mean"].isna() & (both["optimizer"] == "SGD")
    both["sparsity_within_1"] = (both["sparsity_delta"].abs() <= ZEROS_TOLERANCE) | (unlogged & (both["sparsity"] == 0))
    return both


def draw(ours: pd.DataFrame, authors: pd.DataFrame, out: Path, study: Study = VGG16) -> Path:
    last = max(study.table_epochs[-1], int(ours["epoch"].max()) + 2)
    colours = {name: f"C{i}" for i, name in enumerate(ours["optimizer"].unique())}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for name, theirs in authors[authors["epoch"] <= last].groupby("optimizer", sort=False):
        colour = colours[name]
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
        f"{study.title}, {study.hyper}: ours (solid) vs the authors' {study.repeats} runs (dashed: mean; band: min–max)"
    )
    fig.tight_layout()
    path = out / "figures" / study.figure
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table_rows(both: pd.DataFrame, table_epochs: List[int]) -> list:
    lines = [
        "| optimizer | epoch | train loss ours | authors mean [min, max] | Δ | test acc ours | authors mean "
        "[min, max] | Δ | zeros % ours | authors mean | Δ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in both[both["epoch"].isin(table_epochs)].iterrows():
        cells = [r["optimizer"], str(r["epoch"])]
        for m, fmt in (("train_loss", ".3f"), ("test_acc", ".2f")):
            flag = "" if r[f"{m}_in_band"] else " **out**"
            cells += [
                f"{r[m]:{fmt}}",
                f"{r[f'{m}_mean']:{fmt}} [{r[f'{m}_min']:{fmt}}, {r[f'{m}_max']:{fmt}}]",
                f"{r[f'{m}_delta']:+{fmt}}{flag}",
            ]
        flag = "" if r["sparsity_within_1"] else " **out**"
        if pd.isna(r["sparsity_mean"]):  # not in their log (their WRN SGD runs)
            cells += [f"{r['sparsity']:.2f}", "not logged", f"–{flag}"]
        else:
            cells += [f"{r['sparsity']:.2f}", f"{r['sparsity_mean']:.2f}", f"{r['sparsity_delta']:+.2f}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(both: pd.DataFrame, table_epochs: List[int]) -> list:
    lines = []
    for name, run in both.groupby("optimizer", sort=False):
        at = run[run["epoch"].isin(table_epochs)]
        misses = [
            f"{m.replace('_', ' ')} at {', '.join(map(str, at.loc[~at[f'{m}_in_band'], 'epoch']))}"
            for m in ("train_loss", "test_acc")
            if not at[f"{m}_in_band"].all()
        ]
        zeros_out = run.loc[~run["sparsity_within_1"], "epoch"].tolist()
        zeros = "within ±1 at every epoch" if not zeros_out else f"outside ±1 at epochs {zeros_out}"
        if run["sparsity_mean"].isna().all():  # their WRN SGD logs: no sparsity column
            zeros = f"% zeros at most {run['sparsity'].max():.2f} (not in their log: SGD makes none; {zeros})"
        else:
            zeros = f"% zeros max |Δ| {run['sparsity_delta'].abs().max():.2f} points ({zeros})"
        bands = "outside the band: " + "; ".join(misses) if misses else "inside the band at every table epoch reached"
        lines.append(
            f"- {name} (epochs 1–{run['epoch'].max()}): {zeros}; train loss and test accuracy {bands}"
            f"{between_table_epochs(run, table_epochs)}."
        )
    return lines


def spans(epochs) -> str:
    """1, 2, 3, 5 -> '1–3, 5'."""
    runs: List[List[int]] = []
    for e in sorted(int(e) for e in epochs):
        if runs and e == runs[-1][1] + 1:
            runs[-1][1] = e
        else:
            runs.append([e, e])
    return ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs)


def between_table_epochs(run: pd.DataFrame, table_epochs: List[int]) -> str:
    """The band checks at the epochs the table skips: no target, but a curve is judged at every epoch."""
    others = run[~run["epoch"].isin(table_epochs) & run["train_loss_min"].notna()]
    if others.empty:
        return ""
    outside = []
    for m in ("train_loss", "test_acc"):
        out = others[~others[f"{m}_in_band"]]
        if not out.empty:
            where = ", ".join(
                f"{e} ({'above' if v > hi else 'below'})" for e, v, hi in zip(out["epoch"], out[m], out[f"{m}_max"])
            )
            outside.append(f"{m.replace('_', ' ')} at {where}")
    return f"; between them (epochs {spans(others['epoch'])}; no target): " + (
        "; ".join(outside) if outside else "inside the band"
    )


def initial_weights(ours: pd.DataFrame) -> str:
    digests = ours.groupby("optimizer", sort=False)["initial_weights_sha256"].first()
    same = digests.nunique() == 1 and digests.notna().all()
    listing = ", ".join(f"{k} `{str(v)[:16]}…`" for k, v in digests.items())
    verdict = "the same for all runs: they start from the same weights" if same else "NOT the same for all runs"
    return f"Initial weights (sha256 of the state_dict before the first step): {listing} — {verdict}."


def report(both: pd.DataFrame, ours: pd.DataFrame, study: Study, figure: Path, out: Path) -> str:
    return "\n".join(
        [
            f"# {study.title}: ours beside the authors' logs, epoch by epoch",
            "",
            f"Made by `make cifar-figure` from results/{study.ours_csv} (ours: `scripts/runs/cifar10_runs.py "
            f"collect --setting {study.setting}`) and results/{study.authors_csv} (the authors' {study.repeats} "
            "repeats per setting). Δ = ours − their mean; **out**: outside their min–max band (train loss, test "
            "accuracy) or more than ±1 point from their mean (% zeros).",
            "",
            *table_rows(both, study.table_epochs),
            "",
            "Targets:",
            "",
            *targets(both, study.table_epochs),
            "",
            initial_weights(ours),
            "",
            f"Figure: {figure.relative_to(out.parent)}",
            "",
        ]
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(STUDIES), default="vgg16")
    parser.add_argument("--ours", type=Path, help="default: results/<preset>_curves.csv")
    parser.add_argument("--authors", type=Path, help="default: the authors' curves of the model in results/")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    study = STUDIES[args.model]
    ours, authors = load(
        args.ours or ROOT / "results" / study.ours_csv, args.authors or ROOT / "results" / study.authors_csv, study
    )
    both = compare(ours, authors)
    figure = draw(ours, authors, args.out, study)
    keep = ["optimizer", "epoch"] + [f"{m}{s}" for m in METRICS for s in ("", "_mean", "_min", "_max", "_delta")]
    both[both["epoch"].isin(study.table_epochs)][keep].to_csv(
        args.out / f"{study.preset}_table.csv", index=False, float_format="%.6g"
    )
    text = report(both, ours, study, figure, args.out)
    (args.out / f"{study.preset}_table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
