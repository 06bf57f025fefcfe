#!/usr/bin/env python
"""The reproduction report, generated from results/*.csv: a summary page and one page per paper experiment.

    python docs/gen_report.py [--results results] [--out DIR]     # write the pages to DIR to read them

`mkdocs build` runs it through docs/hooks.py, so the site always shows the committed CSVs. Each page gives a status
computed from the targets in docs/report_targets.csv (reproduced: every setting run to the authors' last epoch and
within the targets; partial: some of it run; not run here: nothing run yet), our numbers beside the authors' with the
differences, our curves over theirs (the figures results/figures/*.png that the results scripts draw), and, for what
is not run, the commands that run it (src/results.py: torchrun on one node and SLURM). Every number on a page comes
from a CSV: the formatting below only rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.results import comparison_table  # noqa: E402

TARGETS = Path(__file__).with_name("report_targets.csv")
REPRODUCED, PARTIAL, NOT_RUN = "reproduced", "partial", "not run here"
BADGE = {
    status: f'<span class="status {css}">{status}</span>'  # styled by docs/assets/extra.css
    for status, css in ((REPRODUCED, "reproduced"), (PARTIAL, "partial"), (NOT_RUN, "not-run"))
}
NO_RUNS = Path("/nonexistent-runs")  # comparison_table reads no runs from here: the paper rows, all "not run"


def script(name: str):
    """A script of scripts/figures/ (the results figures and tables) as a module, to reuse its loading and drawing."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "figures" / f"{name}.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@dataclass(frozen=True)
class Experiment:
    key: str  # the experiment's name in results/paper_results.csv and configs/experiment/
    slug: str  # the page: report/<slug>.md
    title: str
    kind: str  # "table" (final numbers), "vgg16" (curves + final numbers) or "keras" (the figure's curves)
    table: str = ""  # results/<table>: ours beside the paper's final numbers (make imagenet-table / cifar-table)
    figures: tuple = ()  # results/figures/<name>: our curves over theirs (make cifar-figure / cifar10-figure)
    study: str = ""  # scripts/figures/make_band_figure.py's STUDIES: our first epochs over the authors' band


EXPERIMENTS = (
    Experiment("imagenet_resnet50", "resnet50-imagenet", "ResNet-50 on ImageNet", "table", "imagenet_table.csv"),
    Experiment(
        "cifar100_wrn28x10",
        "wrn28x10-cifar100",
        "WRN-28-10 on CIFAR-100",
        "table",
        "cifar_table.csv",
        ("wrn_curves_cifar100.png",),
    ),
    Experiment(
        "cifar10_wrn28x10",
        "wrn28x10-cifar10",
        "WRN-28-10 on CIFAR-10",
        "table",
        "cifar_table.csv",
        ("wrn_curves_cifar10.png",),
        "wrn28x10",
    ),
    Experiment(
        "cifar10_vgg16",
        "vgg16-cifar10",
        "VGG16 on CIFAR-10",
        "vgg16",
        "cifar_table.csv",
        ("vgg16_curves.png",),
        "vgg16",
    ),
    Experiment(
        "cifar10_keras_cnn",
        "keras-cnn-cifar10",
        "The Keras CNN figure (CIFAR-10)",
        "keras",
        "",
        ("cifar10_keras_cnn_acc_test.png", "cifar10_keras_cnn_nonzero_weights.png"),
    ),
    Experiment("mnist_lenet5", "lenet5-mnist", "LeNet-5 on MNIST", "table"),
)


@dataclass
class Page:
    experiment: Experiment
    status: str
    summary: str  # one line for the summary page
    body: List[str] = field(default_factory=list)
    figures: Dict[str, bytes] = field(default_factory=dict)  # report/figures/<name> -> PNG


# ---------------------------------------------------------------- formatting: rounding only, never arithmetic


def fmt(value, digits: int = 2, sign: bool = False) -> str:
    """A CSV value as text: rounded to ``digits`` decimals, '–' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, str):
        return value
    text = f"{float(value):{'+' if sign else ''}.{digits}f}"
    return text.lstrip("+-") if float(text) == 0 else text  # a value that rounds to zero has no sign


def fmt_g(value) -> str:
    """A setting (lr, c, mu, epoch) as the CSV spells it."""
    return "–" if pd.isna(value) else f"{float(value):g}"


def md_table(header: List[str], rows: List[List[str]], align: str = "") -> List[str]:
    align = align or "l" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def code_block(command: str, lang: str = "bash") -> List[str]:
    return [f"```{lang}", command, "```", ""]


def tabbed(contents: Dict[str, List[str]]) -> List[str]:
    """Markdown side by side as tabs (pymdownx.tabbed), one per title."""
    lines = []
    for title, content in contents.items():
        lines += [f'=== "{title}"', "", *("    " + line if line else "" for line in content)]
    return lines


def tabs(commands: Dict[str, str]) -> List[str]:
    """Commands side by side as tabs: one tab per way of launching."""
    return tabbed({title: code_block(command) for title, command in commands.items()})


def targets(key: str) -> pd.DataFrame:
    df = pd.read_csv(TARGETS, dtype=str)
    return df[df["experiment"] == key].set_index("metric")


def tolerance(key: str, metric: str) -> float:
    return float(targets(key).loc[metric, "tolerance"])


def target_epochs(key: str, metric: str) -> List[int]:
    return [int(e) for e in targets(key).loc[metric, "epochs"].split()]


def targets_text(key: str, final: Optional[bool] = None) -> List[str]:
    """The targets of ``key``: all, or only those at the authors' last epoch (final) or only the others (not final)."""
    lines = ["Targets (`docs/report_targets.csv`):", ""]
    for metric, row in targets(key).iterrows():
        if final is not None and (row["epochs"] == "final") != final:
            continue
        tol = "inside the authors' min–max band" if row["tolerance"] == "band" else f"within ±{row['tolerance']}"
        where = {
            "final": "at the authors' last epoch",
            "table": "at every epoch of the table",
            "every": "at every epoch",
        }.get(row["epochs"], f"at epochs {', '.join(row['epochs'].split())} (where reached)")
        lines.append(f"- {metric}: {tol} {where} ({row['source']})")
    return lines + [""]


# ---------------------------------------------------------------- the paper's final numbers (every experiment)


def final_table(results: Path, exp: Experiment) -> pd.DataFrame:
    """The paper's rows of ``exp`` with ours from results/<exp.table> where `make *-table` wrote it."""
    path = results / exp.table if exp.table else None
    if path is not None and path.is_file():
        df = pd.read_csv(path)
        df = df[df["experiment"] == exp.key]
        if len(df):
            return df.reset_index(drop=True)
    return comparison_table([exp.key], NO_RUNS)


def final_status(exp: Experiment, table: pd.DataFrame) -> str:
    done = table[table["status"] == "done"]
    if done.empty:
        return NOT_RUN
    tol_acc, tol_zeros = tolerance(exp.key, "top-1"), tolerance(exp.key, "sparsity")
    within = (done["Δ top-1"].abs() <= tol_acc) & ~(done["Δ sparsity"].abs() > tol_zeros)
    reached = done["epoch"] >= done["paper epoch"]
    return REPRODUCED if len(done) == len(table) and bool((within & reached).all()) else PARTIAL


def final_rows(table: pd.DataFrame) -> List[str]:
    header = [
        "optimizer",
        "lr schedule",
        "c",
        "mu",
        "epoch",
        "theirs: top-1 %",
        "sparsity %",
        "ours: top-1 %",
        "sparsity %",
        "Δ top-1",
        "Δ sparsity",
        "runs",
    ]
    rows = []
    for _, r in table.iterrows():
        rows.append(
            [
                r["optimizer"],
                r["lr schedule"],
                fmt_g(r["c"]),
                fmt_g(r["mu"]),
                fmt_g(r["paper epoch"]),
                fmt(r["paper top-1 %"]),
                fmt(r["paper sparsity %"]),
                fmt(r.get("top-1 %")),
                fmt(r.get("sparsity %")),
                fmt(r.get("Δ top-1"), sign=True),
                fmt(r.get("Δ sparsity"), sign=True),
                fmt(r["runs"], 0),
            ]
        )
    return md_table(header, rows, "lllllrrrrrrr")


def setting_name(row: pd.Series) -> str:
    if row["optimizer"] != "grda":
        return row["optimizer"]
    if pd.isna(row["c"]):
        return "grda (c and mu not stated)"
    return f"grda, c {fmt_g(row['c'])}, mu {fmt_g(row['mu'])}"


def launch_rows(table: pd.DataFrame, intro: str = "Each setting not run yet") -> List[str]:
    missing = table[table["status"] == "not run"]
    if missing.empty:
        return ["Every setting of this experiment has a finished run.", ""]
    lines = [
        f"{intro}, on one node (`torchrun`) and as a SLURM job (Hydra's submitit launcher); replace `PATH` "
        "with the dataset's folder. Running the same command again resumes the run.",
        "",
    ]
    for _, r in missing.iterrows():
        name = setting_name(r)
        lines += [f"**{name}** ({r['lr schedule']} lr schedule, {fmt_g(r['paper epoch'])} epochs):", ""]
        lines += tabs({"one node (torchrun)": r["command"], "SLURM": r["slurm"]})
    return lines


def sources(results: Path, key: str) -> List[str]:
    """Where each of the authors' numbers comes from, as results/paper_results.csv records it."""
    paper = pd.read_csv(results / "paper_results.csv")
    lines = ["## Where the authors' numbers come from", ""]
    for _, r in paper[paper["experiment"].isin([key, f"{key}_readme"])].iterrows():
        setting = setting_name(r)
        sourced = "" if str(r["sourced"]).lower() == "true" else " **Not found in the authors' repository.**"
        lines.append(
            f"- **{setting}**, epoch {fmt_g(r['epoch'])}: {r['source']} — `{r['source_file']}` at "
            f"`{str(r['source_commit'])[:7]}`.{sourced} {r['note'] if pd.notna(r['note']) else ''}"
        )
    return lines + [""]


def readme_headline(results: Path, key: str) -> List[str]:
    paper = pd.read_csv(results / "paper_results.csv")
    rows = paper[paper["experiment"] == f"{key}_readme"]
    if rows.empty:
        return []
    body = [[r["optimizer"], fmt(r["test_acc"]), fmt(r["sparsity"])] for _, r in rows.iterrows()]
    return [
        "The authors' README states one more pair (its own row in results/paper_results.csv, not mixed with "
        "the 10-run means above):",
        "",
        *md_table(["optimizer", "top-1 %", "sparsity %"], body, "lrr"),
    ]


# ---------------------------------------------------------------- figures


def committed_figures(results: Path, exp: Experiment) -> Dict[str, bytes]:
    found = {}
    for name in exp.figures:
        path = results / "figures" / name
        if path.is_file():
            found[name] = path.read_bytes()
    return found


def authors_wrn_figure(results: Path, exp: Experiment) -> Dict[str, bytes]:
    """The authors' WRN curves alone (scripts/figures/make_wrn_figure.py), where no committed figure exists yet."""
    make_wrn_figure = script("make_wrn_figure")
    authors = make_wrn_figure.load_authors(results / "authors_wrn_curves.csv")
    dataset = make_wrn_figure.EXPERIMENTS[exp.key]
    with tempfile.TemporaryDirectory() as tmp:
        path = make_wrn_figure.draw(authors, make_wrn_figure.load_ours(Path(tmp)), dataset, Path(tmp))
        return {path.name: path.read_bytes()}


def figure_lines(figures: Dict[str, bytes], caption: str) -> List[str]:
    lines = []
    for name in figures:
        lines += [f"![{caption}](figures/{name})", ""]
    return lines


# ---------------------------------------------------------------- pages of the "table" experiments


def table_curves_intro(figures: Dict[str, bytes], drawn: bool, first_epochs: bool) -> List[str]:
    if drawn:
        return [
            f"No {'finished run of ours yet (our first epochs are above)' if first_epochs else 'run of ours yet'}: "
            "the authors' curves alone, their mean dashed and the band between their best "
            "and worst run (`results/authors_wrn_curves.csv`, drawn by `scripts/figures/make_wrn_figure.py`).",
            "",
        ]
    if figures:
        return [
            "Solid: ours; dashed: the authors' mean, with the band between their best and worst run "
            "(`make cifar-figure`, from `results/authors_wrn_curves.csv` and our runs).",
            "",
        ]
    return [
        "The authors' per-epoch logs of this experiment are not in their repository, and no run of ours "
        "has finished: no curves to show.",
        "",
    ]


def table_page(results: Path, exp: Experiment) -> Page:
    """The paper's final numbers decide the status; our first epochs (WRN-28-10 on CIFAR-10) can only hold it back."""
    table = final_table(results, exp)
    status = final_status(exp, table)
    figures, drawn = committed_figures(results, exp), False
    if not figures and exp.key.endswith("wrn28x10"):
        figures, drawn = authors_wrn_figure(results, exp), True
    ours = (
        f"`make {exp.table.split('_')[0]}-table` collects the finished runs in `runs/` into `results/{exp.table}`."
        if exp.table
        else "No table script collects this experiment's runs yet."
    )
    body = [
        "## Ours vs theirs",
        "",
        f"At the authors' last epoch. {ours}",
        "",
        *final_rows(table),
        *targets_text(exp.key, final=True),
        *readme_headline(results, exp.key),
    ]
    summary = {
        NOT_RUN: "none of the paper's settings has a finished run yet",
        PARTIAL: "some settings run",
        REPRODUCED: "every setting run, within the targets",
    }[status]
    band = first_epochs(results, exp, table)
    if band is not None:
        body += band.lines
        summary += f"; first epochs 1–{band.reached}: {band_verdict(band)}"
        status = PARTIAL if status == REPRODUCED and not band.ok else status
    body += [
        "## Curves",
        "",
        *table_curves_intro(figures, drawn, band is not None),
        *figure_lines(figures, f"{exp.title}: test accuracy and zeros per epoch"),
        "## Run it",
        "",
        *launch_rows(table),
        *sources(results, exp.key),
    ]
    return Page(exp, status, summary, body, {**figures, **(band.figures if band else {})})


# ---------------------------------------------------------------- the Keras CNN figure (curves, 8 optimizers)


def keras_checks(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per table row: whether test accuracy (at the target epochs) and nonzero ratio are within the targets."""
    acc_tol, nz_tol = tolerance(key, "test_acc"), tolerance(key, "nonzero_ratio")
    at_target = table["epoch"].isin(target_epochs(key, "test_acc"))
    acc_ok = ~at_target | (table["test_acc Δ"].abs() <= acc_tol)
    nz_ok = table["nonzero_ratio Δ"].isna() | (table["nonzero_ratio Δ"].abs() <= nz_tol)
    return table.assign(acc_ok=acc_ok, nz_ok=nz_ok, ok=acc_ok & nz_ok)


def keras_table(rows: pd.DataFrame) -> List[str]:
    """One tab per optimizer: its table epochs, ours beside the authors' figure."""
    header = ["epoch", "test acc ours", "theirs", "Δ", "nonzero ratio ours", "theirs", "Δ", "targets"]
    tables = {}
    for name, group in rows.groupby("optimizer", sort=False):
        body = [
            [
                fmt_g(r["epoch"]),
                fmt(r["test_acc ours"], 4),
                fmt(r["test_acc authors"], 4),
                fmt(r["test_acc Δ"], 4, True),
                fmt(r["nonzero_ratio ours"], 4),
                fmt(r["nonzero_ratio authors"], 4),
                fmt(r["nonzero_ratio Δ"], 4, True),
                "✓" if r["ok"] else "✗",
            ]
            for _, r in group.iterrows()
        ]
        tables[name] = md_table(header, body, "rrrrrrrl")
    return tabbed(tables)


def keras_verdicts(checked: pd.DataFrame, ours: pd.DataFrame, last_epoch: int) -> Dict[str, str]:
    verdicts = {}
    for name, rows in checked.groupby("optimizer", sort=False):
        reached = int(ours.loc[ours["optimizer"] == name, "epoch"].max())
        misses = [
            f"{m} at epochs {', '.join(fmt_g(e) for e in rows.loc[~rows[flag], 'epoch'])}"
            for m, flag in (("test accuracy", "acc_ok"), ("nonzero ratio", "nz_ok"))
            if not rows[flag].all()
        ]
        verdicts[name] = f"**{name}**: epochs 1–{reached} of the figure's 1–{last_epoch}; " + (
            "within the targets" if not misses else "outside: " + "; ".join(misses)
        )
    return verdicts


def keras_page(results: Path, exp: Experiment) -> Page:
    curves, table_path = results / "cifar10_keras_cnn_curves.csv", results / "cifar10_keras_cnn_table.csv"
    authors = pd.read_csv(results / "authors_keras_cnn_curves.csv")
    last_epoch = int(authors["epoch"].max())
    if not (curves.is_file() and table_path.is_file()):
        return Page(exp, NOT_RUN, "no run yet", ["## Run it", "", *code_block("make cifar10-runs")])
    ours, table = pd.read_csv(curves), pd.read_csv(table_path)
    checked = keras_checks(table, exp.key)
    figure = checked[checked["optimizer"].isin(authors["optimizer"].unique())]
    verdicts = keras_verdicts(figure, ours, last_epoch)
    done = bool(figure["ok"].all()) and all(ours.groupby("optimizer")["epoch"].max() >= last_epoch)
    status = REPRODUCED if done else PARTIAL
    body = [
        "## Where it stands",
        "",
        *(f"- {v}" for v in verdicts.values()),
        "",
        *targets_text(exp.key),
        "## Curves",
        "",
        "Solid: ours; dashed: the authors' figure, digitised (`make cifar10-figure`).",
        "",
        *figure_lines(committed_figures(results, exp), "Keras CNN on CIFAR-10: ours over the authors' figure"),
        "## Ours vs theirs",
        "",
        "From `results/cifar10_keras_cnn_table.csv`; the authors' values read off their "
        "figure (`results/authors_keras_cnn_curves.csv`).",
        "",
        *keras_table(figure),
        "### More runs",
        "",
        "(weights): the accumulator starting at the weights, the paper's rule, against the "
        "same curves of the authors (their figure's optimizer started it at U(−0.1, 0.1)); (seed N): another "
        "draw of the same optimizer.",
        "",
        *keras_table(checked[~checked.index.isin(figure.index)]),
        "## Run the rest",
        "",
        "All the figure's optimizers, resumable (`EPOCHS`, `RUNS`, `PARALLEL` in the "
        "Makefile), then the CSVs and figures of this page:",
        "",
        *code_block("make cifar10-runs\nmake cifar10-curves cifar10-figure"),
        *launch_rows(comparison_table([exp.key], NO_RUNS), "Or one optimizer of the figure on its own"),
    ]
    reached = int(ours["epoch"].max())
    summary = f"epochs 1–{reached} of the figure's 1–{last_epoch}; " + (
        "within the targets"
        if figure["ok"].all()
        else "outside the targets: " + ", ".join(figure.loc[~figure["ok"], "optimizer"].unique())
    )
    return Page(exp, status, summary, body, committed_figures(results, exp))


# ---------------------------------------------------------------- our first epochs over the authors' band (VGG16, WRN)

BAND_METRICS = (("train_loss", "train loss", 3), ("test_acc", "test acc %", 2), ("sparsity", "zeros %", 2))


@dataclass
class Band:
    """The section of a page that puts our first epochs over the authors' band (scripts/figures/make_band_figure.py)."""

    lines: List[str]
    figures: Dict[str, bytes]
    ok: bool  # every run within the targets at every epoch reached
    reached: str  # the last epoch of ours, as text


def band_study(exp: Experiment):
    """The study of make_band_figure.STUDIES that ``exp`` follows epoch by epoch."""
    return script("make_band_figure").STUDIES[exp.study]


def mark_targets(both: pd.DataFrame, key: str, epochs=None) -> pd.DataFrame:
    """zeros_ok at every epoch; band_ok (train loss and test accuracy in the authors' band) at ``epochs`` (None:
    every epoch; True elsewhere)."""
    # The authors' WRN SGD logs have no sparsity: SGD makes no exact zeros, so ours must have none (as compare() says).
    unlogged = both["sparsity_mean"].isna() & (both["optimizer"] == "SGD") & (both["sparsity"] == 0)
    both["zeros_ok"] = (both["sparsity_delta"].abs() <= tolerance(key, "sparsity per epoch")) | unlogged
    in_band = both["train_loss_in_band"] & both["test_acc_in_band"]
    both["band_ok"] = in_band if epochs is None else ~both["epoch"].isin(epochs) | in_band
    return both


def band_curves(results: Path, key: str, study):
    """Ours and the authors' per epoch, via scripts/figures/make_band_figure.py; with its committed table's deltas."""
    band = script("make_band_figure")
    ours, authors = band.load(results / study.ours_csv, results / study.authors_csv, study)
    both = mark_targets(band.compare(ours, authors), key, study.table_epochs)
    at_table = both["epoch"].isin(study.table_epochs)
    committed = results / f"{study.preset}_table.csv"
    shown = both[at_table].drop(columns=[f"{m}_delta" for m, _, _ in BAND_METRICS])
    if committed.is_file():  # the deltas as `make cifar-figure` wrote them
        deltas = pd.read_csv(committed)[["optimizer", "epoch", *(f"{m}_delta" for m, _, _ in BAND_METRICS)]]
        shown = shown.merge(deltas, on=["optimizer", "epoch"], how="left")
    return ours, authors, both, shown


def band_theirs(r: pd.Series, m: str, digits: int) -> str:
    if pd.isna(r[f"{m}_mean"]):  # not in their log (the authors' WRN SGD runs: no sparsity)
        return "not logged"
    return f"{fmt(r[f'{m}_mean'], digits)} [{fmt(r[f'{m}_min'], digits)}, {fmt(r[f'{m}_max'], digits)}]"


def band_table(shown: pd.DataFrame) -> List[str]:
    """One tab per run: the table's epochs, ours beside the authors' mean and band."""
    header, align = ["epoch"], "r"
    for _, label, _ in BAND_METRICS:
        header += [f"{label} ours", "theirs: mean [min, max]", "Δ"]
        align += "rrr"
    tables = {}
    for name, group in shown.groupby("optimizer", sort=False):
        rows = []
        for _, r in group.iterrows():
            cells = [fmt_g(r["epoch"])]
            for m, _, d in BAND_METRICS:
                cells += [fmt(r[m], d), band_theirs(r, m, d), fmt(r.get(f"{m}_delta"), d, True)]
            rows.append(cells + ["✓" if r["zeros_ok"] and r["band_ok"] else "✗"])
        tables[name] = md_table(header + ["targets"], rows, align + "l")
    return tabbed(tables)


def band_verdicts(both: pd.DataFrame, last_epoch: int) -> List[str]:
    lines = []
    for name, run in both.groupby("optimizer", sort=False):
        zeros_out = run.loc[~run["zeros_ok"], "epoch"]
        band_out = run.loc[~run["band_ok"], "epoch"]
        parts = [
            f"**{name}**: epochs 1–{fmt_g(run['epoch'].max())} of {last_epoch}",
            "% zeros within the target at every epoch"
            if zeros_out.empty
            else "% zeros outside the target at epochs " + ", ".join(map(fmt_g, zeros_out)),
            "train loss and test accuracy inside the authors' band at the table's epochs"
            if band_out.empty
            else "outside the authors' band at epochs " + ", ".join(map(fmt_g, band_out)),
        ]
        lines.append("- " + "; ".join(parts))
    return lines + [""]


def band_figure(results: Path, study, ours, authors) -> Dict[str, bytes]:
    """The committed figure of `make cifar-figure`, or the same drawn for the site where none is committed."""
    committed = results / "figures" / study.figure
    if committed.is_file():
        return {committed.name: committed.read_bytes()}
    band = script("make_band_figure")
    with tempfile.TemporaryDirectory() as tmp:  # our CSV is newer than the committed figure: draw it for the site
        path = band.draw(ours, authors, Path(tmp), study)
        return {path.name: path.read_bytes()}


def band_section(results: Path, exp: Experiment, last_epoch: int, level: str = "##") -> Band:
    """Where our runs stand, the figure and the per-epoch table, under headings of ``level``."""
    study = band_study(exp)
    ours, authors, both, shown = band_curves(results, exp.key, study)
    figures = band_figure(results, study, ours, authors)
    lines = [
        f"{level} Where it stands",
        "",
        *band_verdicts(both, last_epoch),
        f"{level} Curves",
        "",
        f"Ours solid, the authors' mean dashed, the band between their best and worst of {study.repeats} runs shaded.",
        "",
        *figure_lines(figures, f"{study.title}: ours over the authors' {study.repeats} runs"),
        f"{level} Ours vs theirs, epoch by epoch",
        "",
        f"Δ = ours − their mean, from `results/{study.preset}_table.csv` (`make cifar-figure`).",
        "",
        *band_table(shown),
    ]
    ok = bool((both["zeros_ok"] & both["band_ok"]).all())
    return Band(lines, figures, ok, fmt_g(ours["epoch"].max()))


def band_verdict(band: Band) -> str:
    return "within the targets so far" if band.ok else "outside the targets at some epochs"


def first_epochs(results: Path, exp: Experiment, final: pd.DataFrame) -> Optional[Band]:
    """Our first epochs over the authors' band on a page whose status the final numbers decide (None: no CSV yet)."""
    if not exp.study or not (results / band_study(exp).ours_csv).is_file():
        return None
    study, last_epoch = band_study(exp), int(final["paper epoch"].max())
    band = band_section(results, exp, last_epoch, "###")
    intro = [
        "## Our first epochs",
        "",
        f"Our runs on the authors' {last_epoch}-epoch schedule, from their first epoch (`make "
        f"cifar10-{study.setting}-runs`, resumable; then `make cifar10-{study.setting}-curves cifar-figure` writes "
        f"`results/{study.ours_csv}`), beside the authors' {study.repeats} runs of each. The status above follows "
        "the final numbers only: these epochs tell whether our runs start as theirs did, and a miss here keeps the "
        "page from reproduced.",
        "",
        *targets_text(exp.key, final=False),
    ]
    return Band(intro + band.lines, band.figures, band.ok, band.reached)


def draw_label(run: pd.Series) -> str:
    data = run["seed"] if pd.isna(run.get("data_seed")) else run["data_seed"]
    return f"{run['optimizer']}: weights of seed {fmt_g(run['seed'])}, data of seed {fmt_g(data)}"


def draw_tests(results: Path, exp: Experiment, level: str = "##") -> List[str]:
    """The runs that test a miss by drawing it again (`cifar10_runs.py --setting <setting>_redraw`: other initial
    weights or another draw of the data), each beside the run that missed and the authors' band at every epoch."""
    study = band_study(exp)
    path = results / f"{study.preset}_redraw_curves.csv"
    if not path.is_file():
        return []
    band = script("make_band_figure")
    tests, authors = band.load(path, results / study.authors_csv, study)
    ours = pd.read_csv(results / study.ours_csv)
    ours = ours[ours["optimizer"].isin(tests["optimizer"].unique()) & (ours["epoch"] <= tests["epoch"].max())]
    both = mark_targets(band.compare(pd.concat([ours, tests], ignore_index=True), authors), exp.key)
    both["optimizer"] = [draw_label(r) for _, r in both.iterrows()]
    both = both.drop(columns=[f"{m}_delta" for m, _, _ in BAND_METRICS])  # every number shown is one a CSV holds
    return [
        f"{level} Draws of a miss",
        "",
        "The run that missed, drawn again from the same command with `seed` (other initial weights) or `data_seed` "
        "(another draw of the data order, augmentation and dropout; the authors' repeats differ only in these), "
        "and SGD on the same draws where it ran, each beside the authors' band at every epoch "
        f"(`results/{path.name}`; what they show: `results/{study.preset}.md`; Δ left blank).",
        "",
        *band_table(both),
        "",
    ]


# results/<preset>_<suffix>.md made by a script of scripts/analysis/ -> the title of its section on the page
ANALYSES = {
    "lag": "gRDA's lag behind SGD",
    "acc_given_loss": "Test accuracy at a given train loss",
    "machines": "One run on two machines",
}


def analysis_section(
    results: Path, exp: Experiment, suffix: str, level: str = "##"
) -> Tuple[List[str], Dict[str, bytes]]:
    """results/<preset>_<suffix>.md under a heading of ``level``, if it is there, with the figure it names."""
    path = results / f"{band_study(exp).preset}_{suffix}.md"
    if not path.is_file():
        return [], {}
    text = path.read_text()
    body = text.split("\n")[1:]  # its title becomes the section's; its sections go one level below
    lines = [f"{level} {ANALYSES[suffix]}", *(level + line[1:] if line.startswith("## ") else line for line in body)]
    named = re.search(r"Figure: `results/figures/([\w.-]+\.png)`", text)
    figure = results / "figures" / named.group(1) if named else None
    if figure is None or not figure.is_file():
        return lines, {}
    drawn = {figure.name: figure.read_bytes()}
    return lines + figure_lines(drawn, ANALYSES[suffix]), drawn


def vgg16_page(results: Path, exp: Experiment) -> Page:
    final = final_table(results, exp)
    last_epoch = int(final["paper epoch"].max())
    head = ["## The authors' final numbers", "", *final_rows(final), *targets_text(exp.key)]
    runs = [
        "## Run it",
        "",
        "The first epochs of the authors' three runs that this report follows (SGD, gRDA mu "
        "0.51 and mu 0.7; `VGG_EPOCHS`, `RUNS`, `DATA` in the Makefile), then this page's CSV and figure:",
        "",
        *code_block("make cifar10-vgg16-runs\nmake cifar10-vgg16-curves cifar-figure"),
        *launch_rows(final),
        *sources(results, exp.key),
    ]
    curves = band_study(exp).ours_csv
    if not (results / curves).is_file():
        return Page(exp, NOT_RUN, f"no run yet (`results/{curves}` is not there)", head + runs)
    band = band_section(results, exp, last_epoch)
    status = REPRODUCED if band.ok and final_status(exp, final) == REPRODUCED else PARTIAL
    summary = f"epochs 1–{band.reached} of {last_epoch}; {band_verdict(band)}"
    tests, figures = draw_tests(results, exp), dict(band.figures)
    for suffix in ANALYSES:
        lines, drawn = analysis_section(results, exp, suffix)
        tests, figures = tests + lines, {**figures, **drawn}
    return Page(exp, status, summary, band.lines + tests + head + runs, figures)


# ---------------------------------------------------------------- the pages


MAKERS = {"table": table_page, "keras": keras_page, "vgg16": vgg16_page}


def page_markdown(page: Page) -> str:
    exp = page.experiment
    head = [
        "---",
        "hide: [toc]  # the tables need the width",
        "---",
        "",
        f"# {exp.title}",
        "",
        f"**Status: {BADGE[page.status]}** — {page.summary}.",
        "",
        f"Preset: `experiment={exp.key}` (`configs/experiment/{exp.key}.yaml`). This page is generated from "
        "`results/*.csv` by `docs/gen_report.py` at every `make docs`.",
        "",
    ]
    return "\n".join(head + page.body) + "\n"


def summary_markdown(pages: List[Page]) -> str:
    rows = [[f"[{p.experiment.title}]({p.experiment.slug}.md)", BADGE[p.status], p.summary] for p in pages]
    lines = [
        "# Reproduction report",
        "",
        "Where the reproduction of the paper's experiments stands, generated at every `make docs` from the "
        "committed CSVs in `results/` (the authors' numbers and curves, and ours). **reproduced**: every "
        "setting run to the authors' last epoch and within the targets; **partial**: some of it run, or "
        "outside a target; **not run here**: no run yet (each page gives the commands).",
        "",
        *md_table(["experiment", "status", "where it stands"], rows),
        "The targets, per experiment: `docs/report_targets.csv`. The authors' numbers, each with the file and "
        "commit of their repository it comes from: `results/paper_results.csv`.",
        "",
    ]
    return "\n".join(lines)


def build(results: Path = ROOT / "results") -> Dict[str, bytes]:
    """Every file of the report: ``report/<name>`` -> content (Markdown pages as UTF-8, figures as PNG)."""
    pages = [MAKERS[exp.kind](results, exp) for exp in EXPERIMENTS]
    files = {"report/index.md": summary_markdown(pages).encode()}
    for page in pages:
        files[f"report/{page.experiment.slug}.md"] = page_markdown(page).encode()
        for name, data in page.figures.items():
            files[f"report/figures/{name}"] = data
    return files


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--out", type=Path, help="write the pages here (default: print the summary page)")
    args = parser.parse_args(argv)
    files = build(args.results)
    if args.out is None:
        print(files["report/index.md"].decode())
        return 0
    for name, data in files.items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} files under {args.out / 'report'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
