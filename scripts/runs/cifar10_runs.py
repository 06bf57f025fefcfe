#!/usr/bin/env python
"""The authors' CIFAR-10 runs that fit a CPU (the Keras-CNN figure, VGG16) as harness runs: launch (and resume)
them, then collect their curves.

    python scripts/runs/cifar10_runs.py run [--setting figure|weights|seeds|vgg16|vgg16_redraw|vgg16_q40|wrn|all]
                                                 [--epochs 100] [--parallel 2] [--step 5] [--runs-dir ~/grda-runs]
                                                 [--data-root ../shared/data/cifar10] [--only LABEL ...]
    python scripts/runs/cifar10_runs.py collect [--setting keras|vgg16|vgg16_redraw|vgg16_q40|wrn]
                                                 [--runs-dir ~/grda-runs] [--out CSV]

Settings (both are experiment=cifar10_keras_cnn: batch 10, pixels / 255, no augmentation, lr 0.005, c 0.005):
  figure   the eight optimizers of the authors' figure as their script `cifar_cnn_regnet_gRDA_1x10.py` set them,
           gRDA with the accumulator start of their optimizer at the time (optim.accumulator_init=uniform:
           a_0 ~ U(-0.1, 0.1) for every parameter). "SGD Nesterov" is Keras' SGD(lr=0.005, nesterov=True) with
           Keras' default momentum 0, i.e. plain SGD: it runs as such, with seed 1 so that it is a second draw of
           SGD (the authors' two curves differ only by their runs' randomness). Adam runs at lr 0.001 (their README's
           caption); the script's 0.005 stays at chance level here (test accuracy 10 % after 1500 steps) while their
           curve starts at 0.52 after one epoch.
  weights  the four gRDA runs with the accumulator starting at the weights (a_0 = w_0, the paper's rule).
  seeds    more draws of SGD and Adam (figure setting, other seeds: other initial weights, data order and dropout),
           to measure how far two runs of the same optimizer differ. Not part of `all` (= figure + weights).
  vgg16    experiment=cifar10_vgg16, the authors' appendix runs: SGD (their gRDA at c = 0), gRDA mu 0.51 and mu 0.7
           (lr 0.1, batch 128, c 0.0005, seed 1: the same initial weights for all three). Their lr schedule spans
           600 epochs, so --epochs N trains the first N epochs of the 600-epoch run (trainer.stop_after_epoch);
           measured here: ~88 images/s with two threads (~10 min an epoch), the same as two runs at one thread each.
  vgg16_redraw  gRDA mu 0.7 of vgg16 again, twice: data_seed=2 (the same initial weights, another draw of the data
           order, augmentation and dropout) and seed=2 data_seed=1 (other initial weights, the first run's draw of
           the data); and SGD on the same two draws, to compare mu 0.7's lag behind SGD draw by draw. Collect
           them with --out: their labels are the vgg16 runs', their seed and data_seed columns tell them apart.
  vgg16_q40  SGD and gRDA mu 0.7 of vgg16 (seed 1) on ~/cifar10_q40, CIFAR-10 re-encoded at JPEG quality 40 (made
           by `scripts/analysis/reencode_cifar.py ../shared/data/cifar10 ~/cifar10_q40 --quality 40`; --data-root
           does not apply): how far a result moves with the lossy copy. Collect with --out.
  wrn      experiment=cifar10_wrn28x10, the paper's main CIFAR model as the authors ran it: SGD and gRDA mu 0.501
           (lr 0.1, batch 128, c 0.001, seed 1), the first --epochs of the 200-epoch run (a GPU job: ~1.6 h an
           epoch on two CPU threads).

Each run lives in RUNS_DIR/EXPERIMENT/SETTING/SLUG and resumes from its last finished epoch when the same
command runs again; a larger --epochs continues a finished run (the Keras CNN's lr is constant; VGG16 and WRN keep
their whole schedule). On two cores,
`--parallel 2 --step 5` (two runs at a time, one thread each, every run advancing five epochs per turn; a freed
lane takes the run furthest behind) keeps the curves at about the same length and wastes less to sharing: here two
runs at a time took 190-220 s an epoch each, eight at once 17-45 minutes for an epoch of all eight (127-340 s per
run-epoch). `collect` writes every finished epoch of every Keras-CNN run found as
optimizer,epoch,test_acc,nonzero_ratio (test_acc as a fraction); `collect --setting vgg16|wrn` the issue's columns
(optimizer, mu, c, seed, epoch, lr, losses, accuracies in %, % zeros, the initial weights' sha256, the cpu)
to results/<preset>_curves.csv, keeping the rows already there of runs this machine lacks or has not carried as far,
which scripts/figures/make_band_figure.py puts over the authors' band.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from src.launch import (  # noqa: E402
    epochs_done,
    initial_weights_digest,
    read_config,
    read_metrics,
    read_summary,
    train_command,
)
from src.launch import launch as launch_run  # noqa: E402
from src.run_log import cpu_model  # noqa: E402

EXPERIMENT = "cifar10_keras_cnn"
# The experiment of each setting; the Keras CNN's unless named here.
EXPERIMENTS = {
    "vgg16": "cifar10_vgg16",
    "vgg16_redraw": "cifar10_vgg16",
    "vgg16_q40": "cifar10_vgg16",
    "wrn": "cifar10_wrn28x10",
}
# Settings whose lr schedule spans the preset's whole run (VGG16: the WRN schedule over 600 epochs): their runs keep
# trainer.epochs and advance with trainer.stop_after_epoch, so epoch 20 of ours is epoch 20 of the authors' run.
FULL_LENGTH = {"vgg16", "vgg16_redraw", "vgg16_q40", "wrn"}
UNIFORM = ["optim.accumulator_init=uniform"]  # the preset's default for gRDA; explicit so the commands say it
WEIGHTS = ["optim.accumulator_init=weights"]
# CIFAR-10 re-encoded at JPEG quality 40 (scripts/analysis/reencode_cifar.py), for the vgg16_q40 setting
Q40 = [f"data.root={Path.home() / 'cifar10_q40'}"]

# (setting, slug, label as in the authors' legend, overrides), in the legend's order
RUNS = [
    ("figure", "sgd", "SGD", ["optim=sgd"]),
    ("figure", "sgd_nesterov", "SGD Nesterov", ["optim=sgd_momentum", "optim.momentum=0.0", "seed=1"]),
    ("figure", "grda_mu0.3", "gRDA mu=0.3", ["optim=grda", "optim.mu=0.3", *UNIFORM]),
    ("figure", "grda_mu0.51", "gRDA mu=0.51", ["optim=grda", "optim.mu=0.51", *UNIFORM]),
    ("figure", "grda_mu0.7", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7", *UNIFORM]),
    ("figure", "grda_mu1.0", "gRDA mu=1.0", ["optim=grda", "optim.mu=1.0", *UNIFORM]),
    ("figure", "adam", "Adam", ["optim=adam", "optim.lr=0.001"]),
    ("figure", "adagrad", "Adagrad", ["optim=adagrad"]),
    ("weights", "grda_mu0.3", "gRDA mu=0.3 (weights)", ["optim=grda", "optim.mu=0.3", *WEIGHTS]),
    ("weights", "grda_mu0.51", "gRDA mu=0.51 (weights)", ["optim=grda", "optim.mu=0.51", *WEIGHTS]),
    ("weights", "grda_mu0.7", "gRDA mu=0.7 (weights)", ["optim=grda", "optim.mu=0.7", *WEIGHTS]),
    ("weights", "grda_mu1.0", "gRDA mu=1.0 (weights)", ["optim=grda", "optim.mu=1.0", *WEIGHTS]),
    ("seeds", "sgd_seed2", "SGD (seed 2)", ["optim=sgd", "seed=2"]),
    ("seeds", "adam_seed1", "Adam (seed 1)", ["optim=adam", "optim.lr=0.001", "seed=1"]),
    ("seeds", "sgd_seed3", "SGD (seed 3)", ["optim=sgd", "seed=3"]),
    ("seeds", "adam_seed2", "Adam (seed 2)", ["optim=adam", "optim.lr=0.001", "seed=2"]),
    # VGG16 (experiment=cifar10_vgg16, the authors' appendix runs: lr 0.1, batch 128, c 0.0005, seed 1 for all three,
    # so the three start from the same weights, as theirs all started from their SGD run's initial checkpoint).
    # Their "SGD" is their gRDA at c = 0, i.e. SGD without momentum: the preset's optim=sgd.
    ("vgg16", "sgd", "SGD", ["optim=sgd"]),
    ("vgg16", "grda_mu0.51", "gRDA mu=0.51", ["optim=grda", "optim.mu=0.51"]),
    ("vgg16", "grda_mu0.7", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7"]),
    # A second draw of the data order, augmentation and dropout from the same initial weights, as the authors'
    # repeats differ: is a miss of the first draw (mu 0.7's test accuracy at epoch 3) draw-to-draw variation?
    ("vgg16_redraw", "grda_mu0.7_data2", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7", "data_seed=2"]),
    # ... and other initial weights with the first draw of the data (seed=2, data_seed=1): is it the initial weights?
    ("vgg16_redraw", "grda_mu0.7_seed2", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7", "seed=2", "data_seed=1"]),
    # SGD on the same two draws: gRDA mu 0.7's lag behind SGD on one draw (the authors' mu 0.7 runs lag theirs)
    ("vgg16_redraw", "sgd_seed2", "SGD", ["optim=sgd", "seed=2", "data_seed=1"]),
    ("vgg16_redraw", "sgd_data2", "SGD", ["optim=sgd", "data_seed=2"]),
    # A third initial draw, SGD and mu 0.7: the authors' script never sets --seed, so their repeats may all share one
    # initial draw; does the lag behind SGD move from one initial draw to the next as much as ours and theirs differ?
    ("vgg16_redraw", "sgd_seed3", "SGD", ["optim=sgd", "seed=3", "data_seed=1"]),
    ("vgg16_redraw", "grda_mu0.7_seed3", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7", "seed=3", "data_seed=1"]),
    # The vgg16 runs' first draw on a more compressed copy of the data: does a result move with the JPEG copy?
    ("vgg16_q40", "sgd", "SGD", ["optim=sgd", *Q40]),
    ("vgg16_q40", "grda_mu0.7", "gRDA mu=0.7", ["optim=grda", "optim.mu=0.7", *Q40]),
    # WRN-28-10 (experiment=cifar10_wrn28x10: lr 0.1, batch 128, c 0.001, seed 1 for both, as the authors' gRDA runs
    # started from their SGD run's initial checkpoint). mu 0.501: the paper's table.
    ("wrn", "sgd", "SGD", ["optim=sgd"]),
    ("wrn", "grda_mu0.501", "gRDA mu=0.501", ["optim=grda", "optim.mu=0.501"]),
]
COLUMNS = ["optimizer", "epoch", "test_acc", "nonzero_ratio"]


def experiment(setting: str) -> str:
    return EXPERIMENTS.get(setting, EXPERIMENT)


def run_dir(runs_dir: Path, setting: str, slug: str) -> Path:
    return runs_dir / experiment(setting) / setting / slug


def run_overrides(args, setting: str, overrides, epochs: int) -> list:
    """A run's overrides: its experiment and optimizer, where it trains to, and its share of the cores."""
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    length = f"trainer.stop_after_epoch={epochs}" if setting in FULL_LENGTH else f"trainer.epochs={epochs}"
    own_root = any(o.startswith("data.root=") for o in overrides)  # a run on another copy of the data
    return [
        f"experiment={experiment(setting)}",
        *([] if own_root else [f"data.root={args.data_root}"]),
        length,
        f"trainer.threads={threads}",
        *overrides,
    ]


def command(args, setting: str, slug: str, overrides, epochs: int) -> list:
    return train_command(
        *run_overrides(args, setting, overrides, epochs), run_dir=run_dir(args.runs_dir, setting, slug)
    )


def selected(args):
    settings = ("figure", "weights") if args.setting == "all" else (args.setting,)
    runs = [r for r in RUNS if r[0] in settings and (not args.only or r[2] in args.only or r[1] in args.only)]
    if not runs:
        sys.exit(f"error: no run matches --setting {args.setting} --only {' '.join(args.only or [])}")
    return runs


def targets(epochs: int, step: int) -> list:
    """The epochs the runs advance to in turn: every `step` epochs, then `epochs` (all at once without a step)."""
    return [*range(step, epochs, step), epochs] if step > 0 else [epochs]


def launch(args) -> int:
    def one(run, epochs: int) -> int:
        setting, slug, label, overrides = run
        out = run_dir(args.runs_dir, setting, slug)
        out.mkdir(parents=True, exist_ok=True)
        print(f"{label} -> {out} (to epoch {epochs})", flush=True)
        code = launch_run(
            *run_overrides(args, setting, overrides, epochs), run_dir=out, log=out / "console.log", nice=args.nice
        ).returncode
        print(
            f"{label} [{setting}]: {'done' if code == 0 else f'FAILED (exit {code}), see {out}/console.log'}",
            flush=True,
        )
        return code

    runs = selected(args)
    lock, busy, failed = threading.Lock(), set(), set()

    def next_job():
        """The run furthest behind (legend order among equals) that no lane is running, and its next target."""
        with lock:
            done_by_run = {
                i: epochs_done(run_dir(args.runs_dir, r[0], r[1]))
                for i, r in enumerate(runs)
                if i not in busy and i not in failed
            }
            waiting = [(done, i) for i, done in done_by_run.items() if done < args.epochs]
            if not waiting:
                return None
            done, i = min(waiting)
            busy.add(i)
            return i, next(t for t in targets(args.epochs, args.step) if t > done)

    def lane() -> None:
        while (job := next_job()) is not None:
            i, target = job
            run, out = runs[i], run_dir(args.runs_dir, runs[i][0], runs[i][1])
            code = one(run, target)
            reached = epochs_done(out)
            if code == 0 and reached < target:
                print(
                    f"{run[2]} [{run[0]}]: stopped at epoch {reached} before {target}, not launched again; see "
                    f"{out}/console.log",
                    flush=True,
                )
            with lock:
                busy.discard(i)
                if code or reached < target:  # a run that does not advance is not launched again
                    failed.add(i)

    # Each lane takes the next job as soon as its run ends: no core waits for the slowest run of a turn.
    lanes = [threading.Thread(target=lane) for _ in range(max(1, args.parallel))]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    return 1 if failed else 0


CURVES_COLUMNS = [
    "optimizer",
    "mu",
    "c",
    "seed",
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "sparsity",
    "initial_weights_sha256",
    "data_seed",
    "cpu",
]


def collect_full_length(args) -> int:
    """Every finished epoch of the VGG16 or WRN runs: test_acc and sparsity (exact zeros over all parameters) in %,
    train_loss the epoch's mean training loss (train mode, as the authors log it), the sha256 of each run's
    initial weights (equal digests: the runs started from the same weights) and the processor of the run's last
    process (this machine's while its first process is still training).

    Rows already in the output file are kept for every run that has no directory here, or whose run here has fewer
    epochs (a session on a new machine that carries one run forward, or restarts one, loses none of the others)."""
    frames = []
    for setting, slug, label, _ in RUNS:
        out = run_dir(args.runs_dir, setting, slug)
        if setting != args.setting or not (out / "metrics.csv").is_file():
            continue
        cfg, summary, df = read_config(out), read_summary(out), read_metrics(out)
        grda = cfg.optim.name == "grda"
        frames.append(
            df.assign(
                optimizer=label,
                mu=cfg.optim.mu if grda else None,
                c=cfg.optim.c if grda else 0.0,
                seed=cfg.seed,
                initial_weights_sha256=initial_weights_digest(out),
                data_seed=cfg.get("data_seed"),  # None: drawn from seed
                cpu=summary.get("environment", {}).get("cpu") if summary else cpu_model(),
            )
        )
    preset = experiment(args.setting)
    if not frames:
        sys.exit(
            f"error: no {args.setting} runs under '{args.runs_dir / preset}'; start them with: "
            f"{Path(__file__).name} run --setting {args.setting}"
        )
    out = args.out or ROOT / "results" / curves_name(args.setting)
    if out.is_file():
        frames = keep_longer_rows(frames, pd.read_csv(out))
    order = {label: i for i, (setting, _, label, _) in reversed(list(enumerate(RUNS))) if setting == args.setting}
    curves = pd.concat(frames, ignore_index=True)
    curves = curves.sort_values(
        ["optimizer", "seed", "data_seed", "epoch"], key=lambda c: c.map(order) if c.name == "optimizer" else c
    )
    return write_curves(curves, out, CURVES_COLUMNS)


def curves_name(setting: str) -> str:
    """results/<preset>_curves.csv for a main setting; a test setting's own file beside it (..._redraw_curves.csv)."""
    preset = experiment(setting)
    main = next(s for s, p in EXPERIMENTS.items() if p == preset)  # the first setting of a preset is its main one
    return f"{preset}_curves.csv" if setting == main else f"{preset}_{setting.split('_', 1)[1]}_curves.csv"


RUN_KEY = ["optimizer", "seed", "data_seed"]


def keep_longer_rows(frames: list, written: pd.DataFrame) -> list:
    """The runs found here, each replaced by its rows in ``written`` where those reach further, plus the runs
    ``written`` has and this machine does not (a run is its optimizer label, seed and data_seed)."""
    missing = [c for c in RUN_KEY[:2] if c not in written]  # no data_seed column: every run drew it from its seed
    if missing:
        sys.exit(f"error: the curves file written before has no {', '.join(missing)} column; move it aside first")

    def key(df: pd.DataFrame) -> tuple:
        row = df.iloc[0]
        return row["optimizer"], row["seed"], None if pd.isna(row["data_seed"]) else row["data_seed"]

    def name(k: tuple) -> str:
        return f"{k[0]} (seed {k[1]:g}, data_seed {'of seed' if k[2] is None else format(k[2], 'g')})"

    written = written.reindex(columns=CURVES_COLUMNS)  # a file from before the data_seed or cpu column lacks it
    earlier = {key(df): df for _, df in written.groupby(RUN_KEY, dropna=False, sort=False)}
    merged = []
    for df in frames:
        old = earlier.pop(key(df), None)
        if old is not None and old["epoch"].max() > df["epoch"].max():
            print(f"{name(key(df))}: epoch {df['epoch'].max()} here, {old['epoch'].max()} written; written rows kept")
            df = old
        merged.append(df)
    for k, df in earlier.items():
        print(f"{name(k)}: no run here; its {len(df)} written rows kept")
        merged.append(df)
    return merged


def write_curves(curves: pd.DataFrame, out: Path, columns) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out, index=False, columns=columns, float_format="%.6g")
    last = curves.groupby("optimizer", sort=False)["epoch"].max()
    print(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in last.items()) + " epochs")
    return 0


def collect(args) -> int:
    if args.setting in FULL_LENGTH:
        return collect_full_length(args)
    frames = []
    for setting, slug, label, _ in RUNS:
        if experiment(setting) != EXPERIMENT:
            continue
        df = read_metrics(run_dir(args.runs_dir, setting, slug))
        if df.empty:
            continue
        frames.append(
            pd.DataFrame(
                {
                    "optimizer": label,
                    "epoch": df["epoch"],
                    "test_acc": df["test_acc"] / 100,
                    "nonzero_ratio": df["nonzero_ratio"],
                }
            )
        )
    if not frames:
        sys.exit(f"error: no runs under '{args.runs_dir / EXPERIMENT}'; start them with: {Path(__file__).name} run")
    return write_curves(
        pd.concat(frames, ignore_index=True), args.out or ROOT / "results" / "cifar10_keras_cnn_curves.csv", COLUMNS
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    run_p = sub.add_parser("run", help="launch or resume the runs")
    run_p.add_argument(
        "--setting",
        choices=("figure", "weights", "seeds", "vgg16", "vgg16_redraw", "vgg16_q40", "wrn", "all"),
        default="figure",
    )
    run_p.add_argument("--epochs", type=int, default=100)
    run_p.add_argument("--parallel", type=int, default=2, help="runs at once; each gets cores/parallel threads")
    run_p.add_argument(
        "--step",
        type=int,
        default=0,
        help="advance a run this many epochs at a time, always the run furthest behind next, so that "
        "with few cores they all reach epoch 10, 20, ... at about the same time (default 0: each "
        "run straight to --epochs)",
    )
    run_p.add_argument("--data-root", default="../shared/data/cifar10")
    run_p.add_argument("--nice", type=int, default=0, help="lower the runs' CPU priority by this much (default: none)")
    run_p.add_argument("--only", nargs="*", help="labels or slugs of the runs to launch (default: all)")
    col_p = sub.add_parser("collect", help="write the per-epoch curves of every run found")
    col_p.add_argument(
        "--setting",
        choices=("keras", "vgg16", "vgg16_redraw", "vgg16_q40", "wrn"),
        default="keras",
        help="keras: the Keras-CNN runs (figure, weights, seeds); vgg16, wrn: the VGG16 or WRN-28-10 runs",
    )
    col_p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: results/cifar10_keras_cnn_curves.csv (keras), results/<preset>_curves.csv (vgg16, wrn)",
    )
    for p in (run_p, col_p):
        p.add_argument("--runs-dir", type=lambda s: Path(s).expanduser().absolute(), default=Path.home() / "grda-runs")
    args = parser.parse_args()
    return launch(args) if args.verb == "run" else collect(args)


if __name__ == "__main__":
    sys.exit(main())
