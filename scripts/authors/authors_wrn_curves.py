"""Per-epoch curves of the authors' WRN-28-10 and VGG16 runs (CIFAR-10 / CIFAR-100), read from their training logs.

The authors of "Directional Pruning of Deep Neural Networks" (Chao et al., NeurIPS 2020) committed the console
logs of their WRN-28-10 runs (10 repeats per setting) to their repository donlan2710/gRDA-Optimizer under
directional_pruning/Figures/appendix/train_cifar{10,100}/wrn28x10/<repeat>/{sgd,grda_c<C>_mu<MU>}.txt, and the
VGG16/CIFAR-10 logs under directional_pruning/Figures/appendix/train_cifar10/vgg16/mu_<MU>_c_<C>_lr_<REPEAT>.txt.
This script reads those files straight from a clone with ``git show COMMIT:PATH`` (no work tree needed),
parses them with :func:`parse_log` and writes

- ``results/authors_wrn_curves.csv``: one row per (dataset, optimizer, mu, c, lr, epoch) with n (repeats),
  mean / std (ddof=1) / min / max of test accuracy (%), sparsity (% of exactly-zero trainable parameters) and
  train loss, plus the lr the log prints for that epoch;
- ``results/authors_wrn_curves.md``: provenance (files, commit, parsing), per-setting n and final mean ± std,
  early-epoch sparsity, and the VGG16/CIFAR-10 final numbers used in results/paper_results.csv;
- ``results/authors_vgg16_curves.csv``: the same columns for VGG16 on CIFAR-10, 600 epochs, over the repeats the
  authors' notebook averages (SGD = their files mu_0.51_c_0.0_*, gRDA with c = 0; gRDA c 0.0005, mu 0.4-0.7);
- ``results/authors_vgg16_curves.md``: its provenance and a few epochs of it.

Only numbers are carried over from the authors' repository; no code of theirs is used.

    git clone https://github.com/donlan2710/gRDA-Optimizer /some/where
    python scripts/authors/authors_wrn_curves.py --repo /some/where [--commit HEAD] [--out results]
    GRDA_AUTHORS_REPO=/some/where python scripts/authors/authors_wrn_curves.py      # the same
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_ENV = "GRDA_AUTHORS_REPO"  # where --repo defaults from: a clone (bare is fine) of the authors' repository
AUTHORS_URL = "https://github.com/donlan2710/gRDA-Optimizer"
WRN_DIR = "directional_pruning/Figures/appendix/train_{dataset}/wrn28x10"
VGG_DIR = "directional_pruning/Figures/appendix/train_cifar10/vgg16"
# The repeats the authors' VGG16 notebook (vgg16/Untitled1.ipynb) averages: 1-10 without 4.
VGG_NOTEBOOK_REPEATS = [1, 2, 3, 5, 6, 7, 8, 9, 10]
# The (mu, c) file families it reads: c = 0 (gRDA without the l1 term = plain SGD) is its "SGD" curve.
VGG_NOTEBOOK_SETTINGS = [(0.51, 0.0), (0.4, 0.0005), (0.51, 0.0005), (0.6, 0.0005), (0.7, 0.0005)]
VGG_EPOCHS = 600
VGG_TABLE_EPOCHS = [1, 2, 3, 5, 10, 15, 20, 50, 100, 200, 300, 400, 500, 600]
EARLY_EPOCHS = list(range(1, 11)) + [25, 50, 100, 200]

COLUMNS = [
    "dataset",
    "model",
    "optimizer",
    "mu",
    "c",
    "lr",
    "epoch",
    "n",
    "lr_epoch",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_min",
    "test_acc_max",
    "sparsity_mean",
    "sparsity_std",
    "sparsity_min",
    "sparsity_max",
    "train_loss_mean",
    "train_loss_std",
    "train_loss_min",
    "train_loss_max",
]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NONZERO_LINE = re.compile(rf"^\s*({_NUM})\s*/\s*(\d+)\s*$")
_PARAM_LINE = re.compile(rf"^\s+(\w+):\s*({_NUM}|True|False)\s*$")
_FLOAT = re.compile(rf"^(?:{_NUM}|nan)$")  # a diverged run prints nan


def parse_log(text: str) -> Tuple[pd.DataFrame, Dict]:
    """Parse one console log of the authors' ``train.py`` (Connectivity_Projection).

    Their format: the optimizer is printed as ``gRDA (`` / ``SGD (`` followed by indented ``key: value`` lines
    and ``)``; then a tabulate table with columns ``ep lr tr_loss tr_acc te_nll te_acc time`` (VGG16 logs add an
    8th column ``sparsity``), its header repeated every 40 epochs. For gRDA runs of the WRN logs each epoch row is
    preceded by a line ``<nonzero> / <total>`` (the number of nonzero entries over all trainable parameters,
    counted after that epoch's training, before testing). The VGG16 logs' ``sparsity`` column is the nonzero
    *fraction* (1.0 for dense), not the fraction of zeros.

    Returns (per-epoch frame, info). The frame has epoch, lr, train_loss, train_acc, test_nll, test_acc,
    nonzero, total, nonzero_frac and sparsity (% zeros, NaN when the log does not count zeros). A repeated epoch
    (a restarted run) keeps its last row; a row whose loss the log prints as ``nan`` (a diverged run) is kept.
    """
    info: Dict = {"optimizer": None, "hparams": {}, "total_epochs": None, "resume": None}
    columns: Optional[List[str]] = None
    pending: Optional[Tuple[float, int]] = None
    in_opt = False
    rows: Dict[int, Dict] = {}
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"^\w+ \($", stripped):
            info["optimizer"] = stripped[:-2].strip()
            in_opt = True
            continue
        if in_opt:
            if stripped == ")":
                in_opt = False
                continue
            m = _PARAM_LINE.match(line)
            if m:
                v = m.group(2)
                info["hparams"][m.group(1)] = v == "True" if v in ("True", "False") else float(v)
            continue
        if stripped.startswith("total epochs:"):
            info["total_epochs"] = int(stripped.split(":")[1])
            continue
        if stripped.startswith("Resume training from"):
            info["resume"] = stripped[len("Resume training from") :].strip()
            continue
        m = _NONZERO_LINE.match(line)
        if m:
            pending = (float(m.group(1)), int(m.group(2)))
            continue
        tokens = stripped.split()
        if tokens and tokens[0] == "ep" and "te_acc" in tokens:
            columns = tokens
            continue
        if columns and len(tokens) == len(columns) and all(_FLOAT.match(t) for t in tokens):
            vals = dict(zip(columns, map(float, tokens)))
            epoch = int(vals["ep"])
            row = {
                "epoch": epoch,
                "lr": vals["lr"],
                "train_loss": vals["tr_loss"],
                "train_acc": vals["tr_acc"],
                "test_nll": vals["te_nll"],
                "test_acc": vals["te_acc"],
                "nonzero": math.nan,
                "total": math.nan,
                "nonzero_frac": math.nan,
            }
            if "sparsity" in vals:  # VGG16 logs: the column is the nonzero fraction
                row["nonzero_frac"] = vals["sparsity"]
            if pending is not None:
                row["nonzero"], row["total"] = pending
                row["nonzero_frac"] = pending[0] / pending[1]
                pending = None
            rows[epoch] = row
    df = pd.DataFrame(
        sorted(rows.values(), key=lambda r: r["epoch"]),
        columns=["epoch", "lr", "train_loss", "train_acc", "test_nll", "test_acc", "nonzero", "total", "nonzero_frac"],
    )
    df["sparsity"] = 100.0 * (1.0 - df["nonzero_frac"])
    return df, info


# ---------------------------------------------------------------------------------------------------------------
# reading the authors' repository


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def list_files(repo: str, commit: str, folder: str) -> List[str]:
    return [p for p in git(repo, "ls-tree", "-r", "--name-only", commit, "--", folder).splitlines() if p]


def wrn_logs(repo: str, commit: str) -> List[Dict]:
    """Every WRN-28-10 log: dict(dataset, repeat, optimizer, c, mu, path)."""
    out = []
    for dataset in ("cifar10", "cifar100"):
        for path in list_files(repo, commit, WRN_DIR.format(dataset=dataset)):
            m = re.search(r"/wrn28x10/(\d+)/(sgd|grda_c([0-9.]+)_mu([0-9.]+))\.txt$", path)
            if not m:
                continue
            grda = m.group(2) != "sgd"
            out.append(
                {
                    "dataset": dataset,
                    "repeat": int(m.group(1)),
                    "optimizer": "grda" if grda else "sgd",
                    "c": float(m.group(3)) if grda else math.nan,
                    "mu": float(m.group(4)) if grda else math.nan,
                    "path": path,
                }
            )
    return out


def vgg_logs(repo: str, commit: str) -> List[Dict]:
    """Every VGG16/CIFAR-10 log mu_<MU>_c_<C>_lr_<TAG>.txt: dict(dataset, optimizer, mu, c, repeat, notebook, path).

    TAG is the repeat k (an int) for the files the authors' notebook reads, or e.g. "0.1_1" for the extra runs.
    c = 0 is gRDA without its l1 term, i.e. plain SGD: optimizer "sgd" with mu and c empty, as in the WRN rows.
    """
    out = []
    for path in list_files(repo, commit, VGG_DIR):
        m = re.search(r"/mu_([0-9.]+)_c_([0-9.]+)_lr_([0-9._]+)\.txt$", path)
        if not m:
            continue
        mu, c, tag = float(m.group(1)), float(m.group(2)), m.group(3)
        repeat = int(tag) if tag.isdigit() else tag
        sgd = c == 0.0
        out.append(
            {
                "dataset": "cifar10",
                "optimizer": "sgd" if sgd else "grda",
                "mu": math.nan if sgd else mu,
                "c": math.nan if sgd else c,
                "file_mu": mu,
                "file_c": c,
                "repeat": repeat,
                "path": path,
                "notebook_setting": (mu, c) in VGG_NOTEBOOK_SETTINGS,
                "notebook": (mu, c) in VGG_NOTEBOOK_SETTINGS and repeat in VGG_NOTEBOOK_REPEATS,
            }
        )
    return out


def load(repo: str, commit: str, logs: Iterable[Dict]) -> pd.DataFrame:
    frames = []
    for log in logs:
        df, info = parse_log(git(repo, "show", f"{commit}:{log['path']}"))
        hp = info["hparams"]
        for k, v in log.items():
            df[k] = v
        df["lr0"] = hp.get("lr", df["lr"].iloc[0] if len(df) else math.nan)  # VGG logs print no optimizer
        df["log_c"] = hp.get("c", math.nan)
        df["log_mu"] = hp.get("mu", math.nan)
        df["log_optimizer"] = info["optimizer"]
        df["total_epochs"] = info["total_epochs"]
        df["resume"] = info["resume"]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def check_names(runs: pd.DataFrame) -> None:
    """The file names' c / mu / optimizer agree with what each log prints."""
    for (path, opt), g in runs.groupby(["path", "optimizer"]):
        r = g.iloc[0]
        assert (r["log_optimizer"] == "gRDA") == (opt == "grda"), path
        if opt == "grda":
            assert math.isclose(r["log_c"], r["c"]) and math.isclose(r["log_mu"], r["mu"]), path


def check_vgg(runs: pd.DataFrame) -> None:
    """Every VGG log the notebook reads has epochs 1..600 and lr 0.1; its SGD (c = 0) logs have no zero at all."""
    for (path, opt), g in runs.groupby(["path", "optimizer"]):
        assert list(g["epoch"]) == list(range(1, VGG_EPOCHS + 1)), path
        assert g["lr0"].iloc[0] == 0.1 and g["train_loss"].notna().all(), path
        assert opt == "grda" or (g["nonzero_frac"] == 1.0).all(), path


# ---------------------------------------------------------------------------------------------------------------
# summaries


def curves(runs: pd.DataFrame, model: str = "wrn28x10") -> pd.DataFrame:
    keys = ["dataset", "model", "optimizer", "mu", "c", "lr", "epoch"]
    runs = runs.assign(model=model, lr=runs["lr0"], lr_epoch=runs["lr"].round(6))
    rows = []
    for key, g in runs.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, key))
        row["n"] = len(g)
        lrs = g["lr_epoch"].unique()
        row["lr_epoch"] = lrs[0] if len(lrs) == 1 else math.nan
        for col in ("test_acc", "sparsity", "train_loss"):
            v = g[col].dropna()
            if len(v) == 0:
                row.update({f"{col}_{s}": math.nan for s in ("mean", "std", "min", "max")})
                continue
            row.update(
                {
                    f"{col}_mean": v.mean(),
                    f"{col}_std": v.std(ddof=1) if len(v) > 1 else math.nan,
                    f"{col}_min": v.min(),
                    f"{col}_max": v.max(),
                }
            )
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = {"sgd": 0, "grda": 1}
    df = df.sort_values(
        ["dataset", "optimizer", "mu", "epoch"], key=lambda s: s.map(order) if s.name == "optimizer" else s
    )
    return df.reset_index(drop=True)


def final_table(runs: pd.DataFrame, by: List[str]) -> pd.DataFrame:
    last = runs.loc[runs.groupby("path")["epoch"].idxmax()]
    g = last.groupby(by, dropna=False)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "last_epoch": g["epoch"].agg(lambda s: ",".join(str(e) for e in sorted(set(s)))),
            "test_acc_mean": g["test_acc"].mean(),
            "test_acc_std": g["test_acc"].std(ddof=1),
            "test_acc_std0": g["test_acc"].std(ddof=0),
            "sparsity_mean": g["sparsity"].mean(),
            "sparsity_std": g["sparsity"].std(ddof=1),
            "sparsity_std0": g["sparsity"].std(ddof=0),
            "repeats": g["repeat"].agg(lambda s: ",".join(str(r) for r in sorted(s))),
        }
    )
    return out.reset_index()


def fmt(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(table: pd.DataFrame, wrn: pd.DataFrame, vgg: Optional[pd.DataFrame], commit: str) -> str:
    L: List[str] = []
    a = L.append
    a("# The authors' WRN-28-10 training curves (CIFAR-10, CIFAR-100)")
    a("")
    a(
        "`authors_wrn_curves.csv` is made by `python scripts/authors/authors_wrn_curves.py` from the console logs "
        "that the"
    )
    a("authors of *Directional Pruning of Deep Neural Networks* (Chao, Wang, Xing, Cheng, NeurIPS 2020) committed to")
    a("their repository github.com/donlan2710/gRDA-Optimizer. Numbers only are carried over; none of their code.")
    a("")
    a(f"- Read from a clone of donlan2710/gRDA-Optimizer at commit `{commit}` (branch master;")
    a('  the logs were added in 271b12aa780608646daf546cce8b6caee76e9bb3, "Add codes for experiments in our NeurIPS')
    a('  paper", PR #14, 2020-10-08).')
    a("- Files: `directional_pruning/Figures/appendix/train_cifar10/wrn28x10/<k>/{sgd,grda_c0.001_mu<MU>}.txt` and")
    a(
        "  `directional_pruning/Figures/appendix/train_cifar100/wrn28x10/<k>/...` for repeats k = 1..10 "
        f"({wrn['path'].nunique()} logs)."
    )
    a("  The CIFAR-10 mu 0.4 runs exist for repeats 1-4 only; `train_cifar100/wrn28x10/8/grda_c_mu.txt` is empty")
    a("  and ignored.")
    a("- Runs (their `Connectivity_Projection/run_cifar{10,100}_wrn28x10_train.sh`): lr 0.1, batch 128, 200 epochs,")
    a("  no momentum, no weight decay; lr schedule of their `train.py`: constant to 50 % of the epochs, linear down to")
    a("  1 % of the base lr at 90 %, then constant (the `lr_epoch` column is the lr their log prints for that epoch).")
    a("  Each gRDA run starts from the same `checkpoint-0.pt` (initial weights) as the SGD run of that repeat.")
    a("- Repeats, not seeds: their run scripts put the loop variable `seed` only into directory names and call")
    a("  `train.py` without `--seed` (default 1, `torch.manual_seed(1)`), with `cudnn.benchmark = True`; repeats")
    a("  differ through GPU non-determinism (and whatever the directories held). Initial checkpoint each repeat's runs")
    a("  start from, as the logs print it:")
    for (dataset, repeat), g in wrn.groupby(["dataset", "repeat"]):
        res = sorted(set(g["resume"].dropna()))
        start = ", ".join(f"`{r}`" for r in res) if res else "(SGD log without resume line)"
        fresh = "" if g["resume"].notna().all() else " (the SGD run itself started fresh and saved it)"
        a(f"  - {dataset} repeat {repeat}: {start}{fresh}")
    a("  - (`..._fixbatch` is their `train_fixbatch.py`: the same loop with cuDNN disabled and deterministic.)")
    a("- Parsing (`parse_log`): each table row `ep lr tr_loss tr_acc te_nll te_acc time` gives one epoch; for gRDA")
    a("  the line `<nonzero> / <total>` printed just before the row is that epoch's count. Sparsity =")
    a("  100·(1 − nonzero/total): the share of exactly-zero entries (`torch.norm(p, 0)`) pooled over **all trainable")
    a("  parameters** — conv and linear weights *and* biases and the BatchNorm weights/biases (total 36,489,290 for")
    a("  CIFAR-10, 36,546,980 for CIFAR-100). SGD logs carry no count: sparsity is empty there (the authors' notebook")
    a("  plots 0).")
    a("- Statistics over the repeats of one setting: n, mean, std (ddof=1, sample), min, max. The authors' notebooks")
    a("  (`.../wrn28x10/draw_gRDA_comparison_trainingloss.ipynb`) print np.std (ddof=0); `std0` below gives that.")
    a('  Their printed table\'s column "Epoch 1" is array index 1, i.e. epoch 2 (their 19.11 % at "epoch 1" is')
    a("  epoch 2 here).")
    a("")
    L.extend(wrn_tables(table, wrn))
    if vgg is not None:
        L.extend(vgg_final_section(vgg))
    a(regenerate_line(commit))
    return "\n".join(L) + "\n"


def wrn_tables(table: pd.DataFrame, wrn: pd.DataFrame) -> List[str]:
    """The WRN page's final-epoch and early-sparsity tables."""
    L: List[str] = []
    a = L.append
    a("## Final epoch (200), per setting")
    a("")
    a("| dataset | optimizer | mu | c | n | repeats | test acc % mean ± std (std0) | sparsity % mean ± std (std0) |")
    a("|---|---|---|---|---|---|---|---|")
    for _, r in table.iterrows():
        a(
            f"| {r['dataset']} | {r['optimizer']} | {fmt(r['mu'], 3)} | {fmt(r['c'], 3)} | {r['n']} | {r['repeats']} | "
            f"{r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} ({r['test_acc_std0']:.3f}) | "
            + (
                f"{r['sparsity_mean']:.3f} ± {r['sparsity_std']:.3f} ({r['sparsity_std0']:.3f})"
                if not math.isnan(r["sparsity_mean"])
                else "–"
            )
            + " |"
        )
    a("")
    a("## Early-epoch sparsity (% zeros, mean over repeats)")
    a("")
    eps = [e for e in EARLY_EPOCHS if e in set(wrn["epoch"])]
    a("| dataset | mu | c | " + " | ".join(f"ep {e}" for e in eps) + " |")
    a("|---|---|---|" + "---|" * len(eps))
    g = wrn[wrn["optimizer"] == "grda"].groupby(["dataset", "mu", "c", "epoch"])["sparsity"].mean()
    for (dataset, mu, c), _ in wrn[wrn["optimizer"] == "grda"].groupby(["dataset", "mu", "c"]):
        a(f"| {dataset} | {mu:g} | {c:g} | " + " | ".join(f"{g[(dataset, mu, c, e)]:.2f}" for e in eps) + " |")
    a("")
    return L


def vgg_final_section(vgg: pd.DataFrame) -> List[str]:
    """The WRN page's summary of the VGG16 logs' last epoch (the numbers in results/paper_results.csv)."""
    L: List[str] = []
    a = L.append
    a("## VGG16 on CIFAR-10 (paper appendix; used for results/paper_results.csv)")
    a("")
    a("Epoch 600 of `authors_vgg16_curves.csv` (files, repeats, parsing and the per-epoch curves:")
    a("`authors_vgg16_curves.md`). Files `.../train_cifar10/vgg16/mu_<MU>_c_<C>_lr_<k>.txt`, k = repeat in")
    a(f"{VGG_NOTEBOOK_REPEATS} as in the authors' notebook `.../vgg16/Untitled1.ipynb` (repeat 4 left out: its")
    a("mu 0.7 run diverged to a NaN loss); the c = 0 files (mu 0.51 in the name: gRDA without its l1 term, plain")
    a('SGD) are its "SGD" curve. Sparsity = 100·(1 − the log\'s `sparsity` column, which is the nonzero')
    a("fraction).")
    a("")
    a("| optimizer | mu | c | n | repeats | last epoch | test acc % mean ± std | sparsity % mean ± std |")
    a("|---|---|---|---|---|---|---|---|")
    for _, r in vgg.sort_values("optimizer", ascending=False, kind="stable").iterrows():  # SGD first
        a(
            f"| {r['optimizer']} | {fmt(r['mu'], 2)} | {fmt(r['c'], 4)} | {r['n']} | {r['repeats']} | "
            f"{r['last_epoch']} | {r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} | "
            f"{r['sparsity_mean']:.3f} ± {r['sparsity_std']:.3f} |"
        )
    a("")
    return L


def regenerate_line(commit: str) -> str:
    return (
        f"Regenerate (`git clone {AUTHORS_URL}` gives a clone; --repo defaults to ${REPO_ENV}):\n"
        f"`python scripts/authors/authors_wrn_curves.py --repo PATH_TO_A_CLONE --commit {commit}`\n"
        "or `make authors-logs REPO=PATH_TO_A_CLONE`."
    )


def name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def wrap(L: List[str], text: str) -> None:
    """Append one markdown bullet, wrapped at 118 characters."""
    L.extend(textwrap.wrap(text, width=118, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False))


def diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """Per log whose train loss turns NaN: path, first NaN epoch, last epoch, test acc there."""
    bad = runs[runs["train_loss"].isna()]
    g = bad.groupby("path")
    return pd.DataFrame(
        {
            "first": g["epoch"].min(),
            "last": g["epoch"].max(),
            "test_acc": g["test_acc"].agg(lambda s: ",".join(f"{v:g}" for v in sorted(set(s)))),
        }
    )


def setting_label(r) -> str:
    return "SGD (c = 0)" if r["optimizer"] == "sgd" else f"gRDA mu {r['mu']:g}, c {r['c']:g}"


def epoch_table(curves_: pd.DataFrame, col: str, nd: int) -> List[str]:
    eps = [e for e in VGG_TABLE_EPOCHS if e in set(curves_["epoch"])]
    out = ["| setting | " + " | ".join(f"ep {e}" for e in eps) + " |", "|---|" + "---|" * len(eps)]
    for g in settings(curves_):
        v = g.set_index("epoch")[f"{col}_mean"]
        out.append(f"| {setting_label(g.iloc[0])} | " + " | ".join(f"{v[e]:.{nd}f}" for e in eps) + " |")
    return out


# The VGG page's fixed text: their runs, and the columns of authors_vgg16_curves.csv
VGG_RUNS_AND_COLUMNS = [
    "## Runs",
    "",
    "- Their `Connectivity_Projection/run_cifar10_vgg16_train.sh`: VGG16 without BatchNorm, lr 0.1, batch 128,",
    "  600 epochs, no momentum, no weight decay, 10 repeats; lr constant to 50 % of the epochs, linear down to 1 %",
    "  of it at 90 %, then constant. That script starts the gRDA runs of a repeat from its SGD run's",
    "  `checkpoint-0.pt`; the logs print no resume line, so they do not show it (the committed `train.py` seeds with",
    "  `--seed`, default 1).",
    "- The logs are not what the committed `train.py` writes (it names them `sgd.txt` / `grda_c<C>_mu<MU>.txt` and",
    "  prints 7 columns): they come from a variant of it that is not in the repository, which adds the 8th column",
    "  `sparsity` and prints no optimizer. Before the table each log lists the 32 parameter tensors (weights and",
    "  biases of the 13 conv and 3 linear layers); the fraction is presumably over all of them.",
    "",
    "## Columns of authors_vgg16_curves.csv",
    "",
    "One row per (optimizer, mu, c, lr, epoch), same columns as `authors_wrn_curves.csv`:",
    "",
    "- `dataset` cifar10, `model` vgg16; `optimizer` `sgd` (the c = 0 files; `mu` and `c` empty, as the SGD rows of",
    "  `authors_wrn_curves.csv` and `paper_results.csv`) or `grda` (`mu`, `c` from the file name); `lr` the base lr",
    "  (0.1, the lr the log prints for epoch 1); `epoch` 1..600; `n` the repeats averaged (9);",
    "  `lr_epoch` the lr the logs print for that epoch.",
    "- `test_acc_*`: the log's `te_acc` (%); `train_loss_*`: its `tr_loss`.",
    "- `sparsity_*`: % of exactly-zero entries = 100·(1 − the log's `sparsity` column, which is the **nonzero",
    "  fraction**). The fraction is printed with 4 decimals, so this has a resolution of 0.01 points. The SGD logs",
    "  print 1.0000 every epoch: 0 % zeros.",
    "- `_mean`, `_std` (ddof=1, sample), `_min`, `_max` over the repeats. The notebook's bands are mean ± np.std",
    "  (ddof=0), i.e. std·sqrt(8/9).",
    "",
]


def vgg_markdown(table: pd.DataFrame, vruns: pd.DataFrame, allruns: pd.DataFrame, commit: str) -> str:
    L: List[str] = []
    a = L.append
    used = sorted(vruns["path"].unique())
    a("# The authors' VGG16 training curves (CIFAR-10)")
    a("")
    a(
        "`authors_vgg16_curves.csv` is made by `python scripts/authors/authors_wrn_curves.py` from the console logs "
        "that the"
    )
    a("authors of *Directional Pruning of Deep Neural Networks* (Chao, Wang, Xing, Cheng, NeurIPS 2020) committed to")
    a("their repository github.com/donlan2710/gRDA-Optimizer, read from a clone of donlan2710/gRDA-Optimizer at commit")
    a(f"`{commit}` (the logs were added in 271b12aa780608646daf546cce8b6caee76e9bb3, PR #14,")
    a("2020-10-08). Numbers only are carried over; none of their code.")
    a("")
    a("## Files and repeats")
    a("")
    a(f"- Read ({len(used)} logs): `{VGG_DIR}/mu_<MU>_c_<C>_lr_<k>.txt`")
    a(f"  for (MU, C) = (0.51, 0.0) and (0.4 | 0.51 | 0.6 | 0.7, 0.0005), k in {VGG_NOTEBOOK_REPEATS}. `lr_<k>` in the")
    a("  name is the repeat, not the lr.")
    a("- Why these: they are exactly what the authors' notebook `.../vgg16/Untitled1.ipynb` reads (cell 0:")
    a("  `read_file(0.51, 0.0, seed)` and `read_file(mu, 0.0005, seed)` for mu in 0.4, 0.51, 0.6, 0.7 and seed in")
    a("  [1, 2, 3, 5, 6, 7, 8, 9, 10]; array shape (5, 9, 600, 8)) to draw mean ± std in")
    a("  `gRDA_SGD_cifar10_vgg16_10seeds_acc_loss.pdf`, the paper's appendix VGG16 figure. Its legend calls the c = 0")
    a('  curve "SGD (no other parameters)": gRDA with c = 0 has no soft-threshold, i.e. it is plain SGD')
    a("  (no momentum).")
    bad = diverged(allruns)
    four = allruns[(allruns["repeat"] == 4) & allruns["notebook_setting"]]
    with4 = allruns[allruns["notebook_setting"] & allruns["repeat"].isin(VGG_NOTEBOOK_REPEATS + [4])]
    shift = final_shift(vruns, with4)
    wrap(
        L,
        "- Repeat 4 is left out of every setting, as in the notebook, which never reads it. Its diverged run: "
        + "; ".join(
            f"`{name(p)}` prints train loss `nan` and test accuracy {r['test_acc']} % from epoch "
            f"{r['first']} to {r['last']}"
            for p, r in bad.iterrows()
        )
        + f". The other settings' repeat-4 logs are complete; adding them would move the epoch-{VGG_EPOCHS} means "
        f"by at most {shift['test_acc']:.3f} points (test acc) and {shift['sparsity']:.3f} points (sparsity).",
    )
    extra = sorted(set(allruns["path"]) - set(used) - set(four["path"]))
    wrap(L, "- Not read either (nor by the notebook): " + ", ".join(f"`{name(p)}`" for p in extra) + ".")
    rows, diff = early_all_files(allruns)
    a("- Early sparsity (mean % zeros) over the notebook's repeats and over every file of a notebook setting (repeat 4")
    a(f"  and the `_lr_0.1_<j>` runs included) differ by at most {diff:.3f} points at epochs 1-10; the preset")
    a("  configs/experiment/cifar10_vgg16.yaml quotes the mu 0.51 row over all of its 12 files:")
    a("")
    L.extend(rows)
    a("")
    L.extend(VGG_RUNS_AND_COLUMNS)
    L.extend(vgg_epoch_tables(table))
    a(regenerate_line(commit))
    return "\n".join(L) + "\n"


def vgg_epoch_tables(table: pd.DataFrame) -> List[str]:
    """The VGG page's tables: selected epochs, and the last epoch with its spread."""
    L: List[str] = []
    a = L.append
    a("## Selected epochs (means over the 9 repeats)")
    for title, col, nd in (
        ("Sparsity (% zeros)", "sparsity", 2),
        ("Test accuracy (%)", "test_acc", 2),
        ("Train loss", "train_loss", 4),
    ):
        a("")
        a(f"{title}:")
        a("")
        L.extend(epoch_table(table, col, nd))
    a("")
    a(f"## Epoch {VGG_EPOCHS}, mean ± std [min, max]")
    a("")
    a("| setting | n | test acc % | sparsity % | train loss |")
    a("|---|---|---|---|---|")
    for _, r in table[table["epoch"] == VGG_EPOCHS].iterrows():
        cells = [
            f"{r[f'{c}_mean']:.{nd}f} ± {r[f'{c}_std']:.{nd}f} [{r[f'{c}_min']:.{nd}f}, {r[f'{c}_max']:.{nd}f}]"
            for c, nd in (("test_acc", 2), ("sparsity", 2), ("train_loss", 5))
        ]
        a(f"| {setting_label(r)} | {r['n']} | " + " | ".join(cells) + " |")
    a("")
    return L


def settings(df: pd.DataFrame):
    """(optimizer, mu, c) groups of df in the csv's order: SGD, then gRDA by mu."""
    keys = ["optimizer", "mu", "c"]
    first = df.drop_duplicates(keys).assign(o=lambda d: d["optimizer"].map({"sgd": 0, "grda": 1}))
    for _, r in first.sort_values(["o", "mu"]).iterrows():
        sel = (df["optimizer"] == r["optimizer"]) & ((df["mu"] == r["mu"]) | (df["mu"].isna() & pd.isna(r["mu"])))
        yield df[sel]


def early_all_files(allruns: pd.DataFrame, epochs=(1, 2, 3, 5, 10)) -> Tuple[List[str], float]:
    """Markdown rows: early mean % zeros per notebook setting, its notebook repeats vs all of its files; the
    largest difference over epochs 1-10."""
    out = [
        "| setting | files | n | " + " | ".join(f"ep {e}" for e in epochs) + " |",
        "|---|---|---|" + "---|" * len(epochs),
    ]
    diff = 0.0
    for g_all in settings(allruns[allruns["notebook_setting"]]):
        g_nb = g_all[g_all["notebook"]]
        m_all, m_nb = (g.groupby("epoch")["sparsity"].mean() for g in (g_all, g_nb))
        diff = max(diff, (m_all - m_nb).loc[1:10].abs().max())
        for name, g, m in (("notebook", g_nb, m_nb), ("all", g_all, m_all)):
            out.append(
                f"| {setting_label(g.iloc[0])} | {name} | {g['path'].nunique()} | "
                + " | ".join(f"{m[e]:.2f}" for e in epochs)
                + " |"
            )
    return out, diff


def final_shift(vruns: pd.DataFrame, with4: pd.DataFrame) -> Dict[str, float]:
    """Largest change of an epoch-600 mean (test acc, sparsity) when repeat 4 is added, over the settings whose
    repeat-4 log did not diverge."""
    ok = with4.groupby("path")["train_loss"].transform(lambda s: s.notna().all())
    keys = ["optimizer", "mu", "c"]
    a = vruns[vruns["epoch"] == VGG_EPOCHS].groupby(keys, dropna=False)[["test_acc", "sparsity"]].mean()
    w = with4[ok & (with4["epoch"] == VGG_EPOCHS)]
    b = w.groupby(keys, dropna=False)[["test_acc", "sparsity"]].mean()
    n4 = w[w["repeat"] == 4].groupby(keys, dropna=False).size()
    d = (b - a).loc[n4.index].abs().max()
    return {"test_acc": d["test_acc"], "sparsity": d["sparsity"]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repo",
        default=os.environ.get(REPO_ENV),
        help=f"a clone (bare is fine) of donlan2710/gRDA-Optimizer (default: ${REPO_ENV})",
    )
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument(
        "--out",
        default=str(REPO_ROOT / "results"),
        help="folder for authors_wrn_curves.{csv,md} and authors_vgg16_curves.{csv,md}",
    )
    ap.add_argument("--no-vgg", action="store_true", help="skip the VGG16 files and the VGG16 section of the .md")
    args = ap.parse_args(argv)
    if not args.repo or not Path(args.repo).exists():
        where = f"at {args.repo}" if args.repo else f"given (--repo or ${REPO_ENV})"
        print(
            f"error: no clone of the authors' repository {where}; get one with `git clone {AUTHORS_URL}` and pass "
            f"--repo PATH or set {REPO_ENV}=PATH",
            file=sys.stderr,
        )
        return 2
    commit = git(args.repo, "rev-parse", args.commit).strip()
    runs = load(args.repo, commit, wrn_logs(args.repo, commit))
    check_names(runs)
    table = curves(runs)
    final = final_table(runs, ["dataset", "optimizer", "mu", "c"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vgg = None
    if not args.no_vgg:
        allruns = load(args.repo, commit, vgg_logs(args.repo, commit))
        vruns = allruns[allruns["notebook"]].reset_index(drop=True)
        check_vgg(vruns)
        vtable = curves(vruns, model="vgg16")
        vgg = final_table(vruns, ["optimizer", "mu", "c"])
        vtable.to_csv(out / "authors_vgg16_curves.csv", index=False, float_format="%.6g")
        (out / "authors_vgg16_curves.md").write_text(vgg_markdown(vtable, vruns, allruns, commit))
        print(vgg.to_string(index=False))
        print(f"wrote {out / 'authors_vgg16_curves.csv'} ({len(vtable)} rows) and authors_vgg16_curves.md")
    table.to_csv(out / "authors_wrn_curves.csv", index=False, float_format="%.6g")
    (out / "authors_wrn_curves.md").write_text(markdown(final, runs, vgg, commit))
    print(final.to_string(index=False))
    print(f"wrote {out / 'authors_wrn_curves.csv'} ({len(table)} rows) and authors_wrn_curves.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
