"""Collect finished runs into tables beside the authors' numbers (results/paper_results.csv)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from src.launch import finished_runs, read_config, read_summary

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "results" / "paper_results.csv"


def schedule_label(cfg) -> str:
    """The authors' names for the lr schedules: fixed, step140 (0.1 -> 0.01 after epoch 140), wrn, step."""
    name = cfg.schedule.name
    if name == "constant":
        return "fixed"
    if name == "step" and cfg.experiment == "imagenet_resnet50" and list(cfg.schedule.milestones) == [140]:
        return "step140"
    return name


def collect_runs(runs_dir: Path, experiment: Optional[str] = None) -> pd.DataFrame:
    """One row per finished run (summary.json + config.yaml) under ``runs_dir``."""
    rows: List[Dict] = []
    for run_dir in finished_runs(runs_dir):
        summary, cfg = read_summary(run_dir), read_config(run_dir)
        if experiment is not None and summary.get("experiment") != experiment:
            continue
        finished = summary.get("epochs") == cfg.trainer.epochs
        opt = summary["optimizer"]
        rows.append(
            {
                "experiment": summary["experiment"],
                "optimizer": opt["name"],
                "schedule": schedule_label(cfg),
                "lr": opt.get("base_lr", opt["lr"]),
                "c": opt.get("c", math.nan) if opt["name"] == "grda" else math.nan,
                "mu": opt.get("mu", math.nan) if opt["name"] == "grda" else math.nan,
                "epoch": summary["epochs"],
                "finished": finished,
                "sparsity": summary["sparsity"],
                "test_acc": summary["test_acc"],
                "file_mb": (summary.get("checkpoint_bytes") or math.nan) / 1e6,
                "export_mb": (summary.get("export_bytes") or math.nan) / 1e6,
                "prune": (summary.get("prune") or {}).get("name", "none"),
                "final_sparsity": (summary.get("prune") or {}).get("final_sparsity", math.nan),
                "seed": summary.get("seed"),
                "run_dir": str(run_dir),
            }
        )
    return pd.DataFrame(rows)


def paper_results(experiments: List[str]) -> pd.DataFrame:
    paper = pd.read_csv(PAPER)
    return paper[paper["experiment"].isin(experiments)].reset_index(drop=True)


def _same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    if pd.isna(a) or pd.isna(b):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def match_runs(paper_row: pd.Series, runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return runs
    keep = (
        (runs["experiment"] == paper_row["experiment"])
        & (runs["optimizer"] == paper_row["optimizer"])
        & (runs["schedule"] == paper_row["schedule"])
        & (runs["prune"] == "none")
        & runs["finished"]
    )
    keep &= runs.apply(
        lambda r: _same(r["lr"], paper_row["lr"]) and _same(r["c"], paper_row["c"]) and _same(r["mu"], paper_row["mu"]),
        axis=1,
    )
    return runs[keep]


def gpus_for(row: pd.Series) -> int:
    """GPUs the authors' setting is sized for: 8 for ImageNet, 1 for the CIFAR models."""
    return 8 if row["experiment"] == "imagenet_resnet50" else 1


def launch_command(row: pd.Series) -> str:
    """The single-node torchrun command that runs a paper setting."""
    return f"torchrun --standalone --nproc_per_node={gpus_for(row)} src/train.py " + " ".join(setting_overrides(row))


def launch_command_slurm(row: pd.Series) -> str:
    """The same setting as a SLURM job through Hydra's submitit launcher (one task per GPU)."""
    n = gpus_for(row)
    return (
        f"python src/train.py -m hydra/launcher=submitit_slurm hydra.launcher.nodes=1 hydra.launcher.gpus_per_node={n} "
        f"hydra.launcher.tasks_per_node={n} hydra.launcher.timeout_min=4320 " + " ".join(setting_overrides(row))
    )


def setting_overrides(row: pd.Series) -> List[str]:
    out = [f"experiment={row['experiment']}", "data.root=PATH"]
    out.append(f"optim={row['optimizer']}")
    if row["optimizer"] == "grda":
        out += [f"optim.c={row['c']:g}", f"optim.mu={row['mu']:g}"]
    if row["experiment"] == "imagenet_resnet50":
        out.append("schedule=constant" if row["schedule"] == "fixed" else "schedule.milestones=[140]")
    out.append(f"trainer.epochs={int(row['epoch'])}")
    return out


def comparison_table(experiments: List[str], runs_dir: Path) -> pd.DataFrame:
    """The authors' rows, each with our mean over matching finished runs and the difference."""
    paper = paper_results(experiments)
    runs = (
        pd.concat([collect_runs(runs_dir, e) for e in experiments], ignore_index=True)
        if experiments
        else pd.DataFrame()
    )
    rows = []
    for _, p in paper.iterrows():
        mine = match_runs(p, runs)
        row = {
            "experiment": p["experiment"],
            "optimizer": p["optimizer"],
            "lr schedule": p["schedule"],
            "c": p["c"],
            "mu": p["mu"],
            "paper epoch": p["epoch"],
            "paper sparsity %": p["sparsity"],
            "paper top-1 %": p["test_acc"],
            "paper file MB": p["file_mb"],
        }
        if mine.empty:
            row.update({"runs": 0, "status": "not run", "command": launch_command(p), "slurm": launch_command_slurm(p)})
        else:
            row.update(
                {
                    "runs": len(mine),
                    "status": "done",
                    "epoch": mine["epoch"].max(),
                    "sparsity %": mine["sparsity"].mean(),
                    "top-1 %": mine["test_acc"].mean(),
                    "file MB": mine["file_mb"].mean(),
                    "sparse export MB": mine["export_mb"].mean(),
                    "Δ sparsity": mine["sparsity"].mean() - p["sparsity"] if not pd.isna(p["sparsity"]) else math.nan,
                    "Δ top-1": mine["test_acc"].mean() - p["test_acc"],
                    "command": "; ".join(sorted(mine["run_dir"])),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, title: str, note: str) -> str:
    cols = [c for c in df.columns if c not in ("command", "slurm")]
    lines = [f"# {title}", "", note, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    lines += ["", "## How to run the missing rows", ""]
    for _, r in df.iterrows():
        if r["status"] == "not run":
            lines.append(f"- {r['optimizer']} {r['lr schedule']} c={_fmt(r['c'])} mu={_fmt(r['mu'])}:")
            lines.append(f"  - one node: `{r['command']}`")
            lines.append(f"  - SLURM: `{r['slurm']}`")
    if not (df["status"] == "not run").any():
        lines.append("Every row has a run.")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
