"""Per-epoch curves of the authors' WRN-28-10 runs (CIFAR-10 / CIFAR-100), read from their training logs.

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
  early-epoch sparsity, and the VGG16/CIFAR-10 final numbers used in results/paper_results.csv.

Only numbers are carried over from the authors' repository; no code of theirs is used.

    python scripts/authors_wrn_curves.py [--repo PATH_TO_CLONE] [--commit HEAD] [--out results]
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = "/work/.mirror/donlan2710+gRDA-Optimizer/repo"
WRN_DIR = "directional_pruning/Figures/appendix/train_{dataset}/wrn28x10"
VGG_DIR = "directional_pruning/Figures/appendix/train_cifar10/vgg16"
# The repeats the authors' VGG16 notebook (vgg16/Untitled1.ipynb) averages: 1-10 without 4.
VGG_NOTEBOOK_REPEATS = [1, 2, 3, 5, 6, 7, 8, 9, 10]
EARLY_EPOCHS = list(range(1, 11)) + [25, 50, 100, 200]

COLUMNS = [
    "dataset", "model", "optimizer", "mu", "c", "lr", "epoch", "n", "lr_epoch",
    "test_acc_mean", "test_acc_std", "test_acc_min", "test_acc_max",
    "sparsity_mean", "sparsity_std", "sparsity_min", "sparsity_max",
    "train_loss_mean", "train_loss_std", "train_loss_min", "train_loss_max",
]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NONZERO_LINE = re.compile(rf"^\s*({_NUM})\s*/\s*(\d+)\s*$")
_PARAM_LINE = re.compile(rf"^\s+(\w+):\s*({_NUM}|True|False)\s*$")
_FLOAT = re.compile(rf"^{_NUM}$")


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
    (a restarted run) keeps its last row.
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
            info["resume"] = stripped[len("Resume training from"):].strip()
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
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["epoch"]),
                      columns=["epoch", "lr", "train_loss", "train_acc", "test_nll", "test_acc",
                               "nonzero", "total", "nonzero_frac"])
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
            out.append({
                "dataset": dataset, "repeat": int(m.group(1)), "optimizer": "grda" if grda else "sgd",
                "c": float(m.group(3)) if grda else math.nan, "mu": float(m.group(4)) if grda else math.nan,
                "path": path,
            })
    return out


def vgg_logs(repo: str, commit: str) -> List[Dict]:
    """The VGG16/CIFAR-10 logs named mu_<MU>_c_<C>_lr_<REPEAT>.txt (the authors' notebook reads these)."""
    out = []
    for path in list_files(repo, commit, VGG_DIR):
        m = re.search(r"/mu_([0-9.]+)_c_([0-9.]+)_lr_(\d+)\.txt$", path)
        if m:
            out.append({"mu": float(m.group(1)), "c": float(m.group(2)), "repeat": int(m.group(3)), "path": path})
    return out


def load(repo: str, commit: str, logs: Iterable[Dict]) -> pd.DataFrame:
    frames = []
    for log in logs:
        df, info = parse_log(git(repo, "show", f"{commit}:{log['path']}"))
        hp = info["hparams"]
        for k, v in log.items():
            df[k] = v
        df["lr0"] = hp.get("lr", math.nan)
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


# ---------------------------------------------------------------------------------------------------------------
# summaries


def curves(runs: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "model", "optimizer", "mu", "c", "lr", "epoch"]
    runs = runs.assign(model="wrn28x10", lr=runs["lr0"], lr_epoch=runs["lr"].round(6))
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
            row.update({
                f"{col}_mean": v.mean(), f"{col}_std": v.std(ddof=1) if len(v) > 1 else math.nan,
                f"{col}_min": v.min(), f"{col}_max": v.max(),
            })
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = {"sgd": 0, "grda": 1}
    df = df.sort_values(["dataset", "optimizer", "mu", "epoch"], key=lambda s: s.map(order) if s.name == "optimizer" else s)
    return df.reset_index(drop=True)


def final_table(runs: pd.DataFrame, by: List[str]) -> pd.DataFrame:
    last = runs.loc[runs.groupby("path")["epoch"].idxmax()]
    g = last.groupby(by, dropna=False)
    out = pd.DataFrame({
        "n": g.size(),
        "last_epoch": g["epoch"].agg(lambda s: ",".join(str(e) for e in sorted(set(s)))),
        "test_acc_mean": g["test_acc"].mean(), "test_acc_std": g["test_acc"].std(ddof=1),
        "test_acc_std0": g["test_acc"].std(ddof=0),
        "sparsity_mean": g["sparsity"].mean(), "sparsity_std": g["sparsity"].std(ddof=1),
        "sparsity_std0": g["sparsity"].std(ddof=0),
        "repeats": g["repeat"].agg(lambda s: ",".join(str(r) for r in sorted(s))),
    })
    return out.reset_index()


def fmt(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(table: pd.DataFrame, wrn: pd.DataFrame, vgg: Optional[pd.DataFrame], commit: str, repo: str) -> str:
    L: List[str] = []
    a = L.append
    a("# The authors' WRN-28-10 training curves (CIFAR-10, CIFAR-100)")
    a("")
    a("`authors_wrn_curves.csv` is made by `python scripts/authors_wrn_curves.py` from the console logs that the")
    a("authors of *Directional Pruning of Deep Neural Networks* (Chao, Wang, Xing, Cheng, NeurIPS 2020) committed to")
    a("their repository github.com/donlan2710/gRDA-Optimizer. Numbers only are carried over; none of their code.")
    a("")
    a(f"- Commit read: `{commit}` (branch master; the logs were added in 271b12aa780608646daf546cce8b6caee76e9bb3,")
    a("  \"Add codes for experiments in our NeurIPS paper\", PR #14, 2020-10-08).")
    a("- Files: `directional_pruning/Figures/appendix/train_cifar10/wrn28x10/<k>/{sgd,grda_c0.001_mu<MU>}.txt` and")
    a("  `directional_pruning/Figures/appendix/train_cifar100/wrn28x10/<k>/...` for repeats k = 1..10 "
      f"({wrn['path'].nunique()} logs).")
    a("  The CIFAR-10 mu 0.4 runs exist for repeats 1-4 only; `train_cifar100/wrn28x10/8/grda_c_mu.txt` is empty and ignored.")
    a("- Runs (their `Connectivity_Projection/run_cifar{10,100}_wrn28x10_train.sh`): lr 0.1, batch 128, 200 epochs, no momentum,")
    a("  no weight decay; lr schedule of their `train.py`: constant to 50 % of the epochs, linear down to 1 % of the base")
    a("  lr at 90 %, then constant (the `lr_epoch` column is the lr their log prints for that epoch). Each gRDA run starts from")
    a("  the same `checkpoint-0.pt` (initial weights) as the SGD run of that repeat.")
    a("- Repeats, not seeds: their run scripts put the loop variable `seed` only into directory names and call `train.py`")
    a("  without `--seed` (default 1, `torch.manual_seed(1)`), with `cudnn.benchmark = True`; repeats differ through GPU")
    a("  non-determinism (and whatever the directories held). Initial checkpoint each repeat's runs start from, as the logs print it:")
    for (dataset, repeat), g in wrn.groupby(["dataset", "repeat"]):
        res = sorted(set(g["resume"].dropna()))
        a(f"  - {dataset} repeat {repeat}: " + (", ".join(f"`{r}`" for r in res) if res else "(SGD log without resume line)")
          + ("" if g["resume"].notna().all() else " (the SGD run itself started fresh and saved it)"))
    a("  - (`..._fixbatch` is their `train_fixbatch.py`: the same loop with cuDNN disabled and deterministic.)")
    a("- Parsing (`parse_log`): each table row `ep lr tr_loss tr_acc te_nll te_acc time` gives one epoch; for gRDA the line")
    a("  `<nonzero> / <total>` printed just before the row is that epoch's count. Sparsity = 100·(1 − nonzero/total):")
    a("  the share of exactly-zero entries (`torch.norm(p, 0)`) pooled over **all trainable parameters** — conv and linear")
    a("  weights *and* biases and the BatchNorm weights/biases (total 36,489,290 for CIFAR-10, 36,546,980 for CIFAR-100).")
    a("  SGD logs carry no count: sparsity is empty there (the authors' notebook plots 0).")
    a("- Statistics over the repeats of one setting: n, mean, std (ddof=1, sample), min, max. The authors' notebooks")
    a("  (`.../wrn28x10/draw_gRDA_comparison_trainingloss.ipynb`) print np.std (ddof=0); `std0` below gives that.")
    a("  Their printed table's column \"Epoch 1\" is array index 1, i.e. epoch 2 (their 19.11 % at \"epoch 1\" is epoch 2 here).")
    a("")
    a("## Final epoch (200), per setting")
    a("")
    a("| dataset | optimizer | mu | c | n | repeats | test acc % mean ± std (std0) | sparsity % mean ± std (std0) |")
    a("|---|---|---|---|---|---|---|---|")
    for _, r in table.iterrows():
        a(f"| {r['dataset']} | {r['optimizer']} | {fmt(r['mu'], 3)} | {fmt(r['c'], 3)} | {r['n']} | {r['repeats']} | "
          f"{r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} ({r['test_acc_std0']:.3f}) | "
          + (f"{r['sparsity_mean']:.3f} ± {r['sparsity_std']:.3f} ({r['sparsity_std0']:.3f})" if not math.isnan(r['sparsity_mean']) else "–")
          + " |")
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
    if vgg is not None:
        a("## VGG16 on CIFAR-10 (paper appendix; used for results/paper_results.csv)")
        a("")
        a(f"Files `{VGG_DIR}/mu_<MU>_c_<C>_lr_<k>.txt`, k = repeat (\"lr\" in the name is not the lr: every run has lr 0.1).")
        a("Runs: their `run_cifar10_vgg16_train.sh` (lr 0.1, batch 128, 600 epochs, no momentum/weight decay, same schedule).")
        a("The log's 8th column `sparsity` is the nonzero fraction; sparsity below = 100·(1 − it). The authors' notebook")
        a(f"`{VGG_DIR}/Untitled1.ipynb` averages repeats {VGG_NOTEBOOK_REPEATS} (4 left out) and uses c = 0, mu = 0.51")
        a("(plain SGD: gRDA with c = 0 is SGD without momentum) as its \"SGD\" curve. The extra files `..._lr_0.1_1/2.txt` and")
        a("`mu_0.5_...` are not used by the notebook and are left out here too. Repeat 4 is left out because its mu 0.7 log")
        a("stops at epoch 255 (the notebook stacks 600-epoch arrays); with repeat 4 the other settings move by <= 0.04 points.")
        a("")
        a("| mu | c | n | repeats | last epoch | test acc % mean ± std | sparsity % mean ± std |")
        a("|---|---|---|---|---|---|---|")
        for _, r in vgg.iterrows():
            a(f"| {r['mu']:g} | {r['c']:g} | {r['n']} | {r['repeats']} | {r['last_epoch']} | "
              f"{r['test_acc_mean']:.3f} ± {r['test_acc_std']:.3f} | {r['sparsity_mean']:.3f} ± {r['sparsity_std']:.3f} |")
        a("")
    a(f"Regenerate: `python scripts/authors_wrn_curves.py --repo PATH_TO_A_CLONE --commit {commit}` (default --repo: {DEFAULT_MIRROR}).")
    return "\n".join(L) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=DEFAULT_MIRROR, help="a clone (bare is fine) of donlan2710/gRDA-Optimizer")
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--out", default=str(REPO_ROOT / "results"), help="folder for authors_wrn_curves.{csv,md}")
    ap.add_argument("--no-vgg", action="store_true", help="skip the VGG16 section of the .md")
    args = ap.parse_args(argv)
    if not Path(args.repo).exists():
        print(f"no clone of the authors' repository at {args.repo} (pass --repo)", file=sys.stderr)
        return 2
    commit = git(args.repo, "rev-parse", args.commit).strip()
    runs = load(args.repo, commit, wrn_logs(args.repo, commit))
    check_names(runs)
    table = curves(runs)
    final = final_table(runs, ["dataset", "optimizer", "mu", "c"])
    vgg = None
    if not args.no_vgg:
        vruns = load(args.repo, commit, [v for v in vgg_logs(args.repo, commit) if v["repeat"] in VGG_NOTEBOOK_REPEATS])
        vgg = final_table(vruns, ["mu", "c"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "authors_wrn_curves.csv", index=False, float_format="%.6g")
    (out / "authors_wrn_curves.md").write_text(markdown(final, runs, vgg, commit, args.repo))
    print(final.to_string(index=False))
    if vgg is not None:
        print(vgg.to_string(index=False))
    print(f"wrote {out / 'authors_wrn_curves.csv'} ({len(table)} rows) and authors_wrn_curves.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
