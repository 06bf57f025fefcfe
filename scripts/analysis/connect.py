#!/usr/bin/env python
"""Are the SGD and gRDA minima in the same valley? Loss and accuracy along a line and a trained curve.

    python scripts/analysis/connect.py SGD_CKPT GRDA_CKPT [--points 61] [--curve-epochs 10] [--lr 0.1]
                              [--batch-size B] [--out DIR] [--device cpu] [--seed 0]
                              [--bn-samples 10000] [--data-root DIR] [--threads N]

The paper's Figure 1 (Chao et al., 2020): the sparse minimum gRDA finds lies in the same valley as
SGD's dense minimum. Both checkpoints are this harness's (``checkpoint.pth`` of a run directory); the
model and data are rebuilt from the training config stored in them, which must agree on every
``model.*`` and ``data.*`` key (except where the data lives and how it is loaded).

Two paths from w_sgd (t = 0) to w_grda (t = 1) are evaluated at ``--points`` evenly spaced t:

``line``   w(t) = (1 - t) w_sgd + t w_grda;
``curve``  the quadratic Bezier curve w(t) = (1 - t)^2 w_sgd + 2 t (1 - t) theta + t^2 w_grda
           (Garipov et al., 2018, "Loss surfaces, mode connectivity, and fast ensembling of DNNs").
           Its middle point theta starts at the midpoint (w_sgd + w_grda) / 2 (so the untrained curve
           is the line) and is trained for ``--curve-epochs`` epochs by plain SGD (lr ``--lr``,
           no momentum, batch ``--batch-size``, default the runs' batch size) to minimise
           E_{t ~ U(0,1)} L(w(t)), one t drawn per minibatch, with the model in train mode.

At each t: the training loss (mean cross-entropy over the whole training set, eval mode, no data
augmentation) and the test accuracy (top-1, %). The model is called with
``torch.func.functional_call`` on a parameter dict, so any model of the registry works.

BatchNorm: running statistics fitted at the endpoints do not suit the points in between, so for a
model with BatchNorm layers they are recomputed at every evaluated t (Garipov et al.'s approach):
reset, then one pass in train mode with cumulative averaging over the first ``--bn-samples``
training images (no augmentation), before evaluating. The endpoints are then evaluated with
recomputed statistics too, so their accuracy can differ slightly from the runs' own. Models
without BatchNorm skip this, and their endpoints reproduce each run's final test accuracy exactly.

Writes to ``--out`` (default: GRDA_CKPT's directory / ``connect``):

``connect.csv``   path (line | curve), t, train_loss, test_acc
``connect.png``   training loss and test accuracy against t, both paths
``connect.json``  settings; the endpoints' losses, accuracies and sparsity; per path the largest
                  training loss (and where) and the lowest test accuracy; the curve's training
                  history; and ``same_valley``: true when the largest training loss along the
                  trained curve is at most 2 x the larger of the two endpoints' training losses.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.func import functional_call  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from src.checkpoint import extract_state_dict, load_checkpoint, load_model_weights, write_text_atomic  # noqa: E402
from src.config import RUNTIME_KEYS  # noqa: E402
from src.data import build_datasets  # noqa: E402
from src.distributed import choose_device  # noqa: E402
from src.errors import CheckpointError, UserError  # noqa: E402
from src.models import build_model  # noqa: E402
from src.run_dir import flat_config  # noqa: E402
from src.sparsity import state_dict_sparsity, summarize  # noqa: E402

# Config keys that say where the data lives or how a run goes, not what the model or data are: the harness's
# run-time keys (src/config.py) and the model/data switches that leave the computed function unchanged.
IGNORED_KEYS = set(RUNTIME_KEYS) | {"data.eval_batch_size", "model.init_from", "model.compile", "model.channels_last"}
SAME_VALLEY_FACTOR = 2.0
CRITERION = (
    f"same_valley: the largest training loss along the trained Bezier curve is <= {SAME_VALLEY_FACTOR:g} x "
    "the larger of the two endpoints' training losses"
)
Params = Dict[str, Tensor]


# ------------------------------------------------------------------------------ inputs


def load_run(path: str) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
    """(training config, model weights) of a harness checkpoint."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("config"), Mapping):
        raise CheckpointError(
            f"'{path}' holds no training config: connect.py needs a checkpoint.pth written by src/train.py "
            "(it rebuilds the model and data from the config inside)"
        )
    return dict(ckpt["config"]), extract_state_dict(ckpt, path)


def check_same_setup(cfg_a: Mapping[str, Any], cfg_b: Mapping[str, Any], path_a: str, path_b: str) -> None:
    """UserError naming the first model/data key on which the two training configs differ."""
    a = flat_config({"model": cfg_a.get("model", {}), "data": cfg_a.get("data", {})})
    b = flat_config({"model": cfg_b.get("model", {}), "data": cfg_b.get("data", {})})
    for key in sorted((set(a) | set(b)) - IGNORED_KEYS):
        if a.get(key) != b.get(key):
            raise UserError(
                f"the checkpoints were trained on different setups: {key} is {a.get(key)!r} in '{path_a}' but "
                f"{b.get(key)!r} in '{path_b}'; both runs must share the model and data config"
            )


# ------------------------------------------------------------------------------- paths


def line_point(t: float, w0: Params, w1: Params) -> Params:
    return {n: (1 - t) * w0[n] + t * w1[n] for n in w0}


def curve_point(t: float, w0: Params, theta: Params, w1: Params) -> Params:
    a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t**2
    return {n: a * w0[n] + b * theta[n] + c * w1[n] for n in w0}


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fresh_buffers(model: nn.Module, template: Params) -> Params:
    """Copies of the buffers, BatchNorm running statistics reset to their initial values."""
    out = {n: b.clone() for n, b in template.items()}
    for prefix, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            p = f"{prefix}." if prefix else ""
            out[p + "running_mean"].zero_()
            out[p + "running_var"].fill_(1)
            out[p + "num_batches_tracked"].zero_()
    return out


@torch.no_grad()
def recompute_bn(model: nn.Module, params: Params, template: Params, loader: DataLoader, device, limit: int) -> Params:
    """BatchNorm running statistics of the network ``params``: the average over ``limit`` training images."""
    buffers = fresh_buffers(model, template)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.train()
    try:
        for m in bns:
            m.momentum = None  # cumulative moving average: every batch weighs the same
        seen = 0
        for x, _ in loader:
            if seen >= limit:
                break
            x = x[: limit - seen].to(device)
            functional_call(model, (params, buffers), (x,))
            seen += x.shape[0]
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.eval()
    return buffers


@torch.no_grad()
def evaluate(model: nn.Module, params: Params, buffers: Params, loader: DataLoader, device) -> Tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy in %) of ``loader``'s data, eval mode."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = functional_call(model, (params, buffers), (x,))
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.topk(1, dim=1).indices[:, 0] == y).sum())  # as src/train.py counts
        count += y.shape[0]
    return loss_sum / max(count, 1), 100.0 * correct / max(count, 1)


def train_curve(
    model,
    w0: Params,
    w1: Params,
    buffers: Params,
    loader: DataLoader,
    epochs: int,
    lr: float,
    device,
    gen: torch.Generator,
) -> Tuple[Params, List[float]]:
    """Middle point theta of the Bezier curve, trained to minimise E_t L(w(t)); per-epoch mean losses."""
    theta = {n: ((w0[n] + w1[n]) / 2).detach().clone().requires_grad_(True) for n in w0}
    optimizer = torch.optim.SGD(list(theta.values()), lr=lr, momentum=0.0)
    scratch = {n: b.clone() for n, b in buffers.items()}  # BN updates its running stats in train mode
    history = []
    for epoch in range(epochs):
        model.train()
        loss_sum, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            t = float(torch.rand((), generator=gen))
            logits = functional_call(model, (curve_point(t, w0, theta, w1), scratch), (x,))
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise UserError(f"the curve's training loss became non-finite in epoch {epoch + 1}; lower --lr")
            loss_sum += loss_value * y.shape[0]
            count += y.shape[0]
        history.append(loss_sum / max(count, 1))
        print(f"curve epoch {epoch + 1}/{epochs}: mean training loss {history[-1]:.4f}", flush=True)
    return {n: p.detach() for n, p in theta.items()}, history


# ------------------------------------------------------------------------------ outputs


def write_csv(rows: List[Dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "t", "train_loss", "test_acc"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(buf.getvalue(), path)


def plot(rows: List[Dict[str, Any]], threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, style in (
        ("line", dict(color="C3", ls="--", marker=".")),
        ("curve", dict(color="C0", ls="-", marker=".")),
    ):
        ts = [r["t"] for r in rows if r["path"] == name]
        label = "straight line" if name == "line" else "trained Bezier curve"
        ax_loss.plot(ts, [r["train_loss"] for r in rows if r["path"] == name], label=label, **style)
        ax_acc.plot(ts, [r["test_acc"] for r in rows if r["path"] == name], label=label, **style)
    ax_loss.axhline(threshold, color="gray", lw=0.8, ls=":", label=f"{SAME_VALLEY_FACTOR:g} x max endpoint loss")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_acc.set_ylabel("test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("t   (0: SGD, 1: gRDA)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def path_summary(rows: List[Dict[str, Any]], name: str) -> Dict[str, float]:
    mine = [r for r in rows if r["path"] == name]
    worst = max(mine, key=lambda r: r["train_loss"])
    lowest = min(mine, key=lambda r: r["test_acc"])
    return {
        "max_train_loss": worst["train_loss"],
        "t_at_max_train_loss": worst["t"],
        "min_test_acc": lowest["test_acc"],
        "t_at_min_test_acc": lowest["t"],
    }


# --------------------------------------------------------------------------------- main


def check_args(args: argparse.Namespace) -> None:
    if args.points < 2:
        raise UserError(f"--points must be >= 2, got {args.points}")
    if args.curve_epochs < 0:
        raise UserError(f"--curve-epochs must be >= 0, got {args.curve_epochs}")
    if not args.lr > 0:
        raise UserError(f"--lr must be > 0, got {args.lr}")
    if args.bn_samples < 1:
        raise UserError(f"--bn-samples must be >= 1, got {args.bn_samples}")


def output_dir(args: argparse.Namespace) -> Path:
    out = Path(args.out) if args.out else Path(args.grda_ckpt).resolve().parent / "connect"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output directory '{out}': {e.strerror or e}") from None
    return out


def load_data(cfg: Mapping[str, Any], data_root: Optional[str]):
    """The runs' data: (config, with their augmentation: what the curve trains on, without: losses and BN stats)."""
    data_cfg = OmegaConf.create(cfg["data"])
    if data_root:
        data_cfg.root = data_root
    bundle = build_datasets(data_cfg)
    plain = bundle
    if str(data_cfg.get("augment", "none")).lower() != "none":
        plain_cfg = data_cfg.copy()
        plain_cfg.augment = "none"
        plain = build_datasets(plain_cfg)
    return data_cfg, bundle, plain


def load_endpoints(cfg: Mapping[str, Any], runs, bundle, device: torch.device):
    """The model (frozen: the paths are evaluated through functional_call), w0 (SGD), w1 (gRDA) and w0's buffers."""
    models = []
    for path, sd in runs:
        m = build_model(OmegaConf.create(cfg["model"]), bundle.num_classes, tuple(bundle.input_shape))
        load_model_weights(m, sd, path)
        models.append(m.to(device))
    model = models[0]
    w0 = {n: p.detach() for n, p in models[0].named_parameters()}
    w1 = {n: p.detach() for n, p in models[1].named_parameters()}
    buffers = {n: b.detach() for n, b in models[0].named_buffers()}
    for p in model.parameters():
        p.requires_grad_(False)
    return model, w0, w1, buffers


def walk_paths(model, w0: Params, theta: Params, w1: Params, buffers: Params, loaders, args, device):
    """Training loss and test accuracy at every t of the line and of the curve. ``loaders``: (train eval, test
    eval, BN recomputation)."""
    train_eval, test_eval, bn_loader = loaders
    bn = has_batchnorm(model)
    ts = [i / (args.points - 1) for i in range(args.points)]  # exactly 0.0 and 1.0 at the ends
    rows = []
    for name in ("line", "curve"):
        for t in ts:
            params = line_point(t, w0, w1) if name == "line" else curve_point(t, w0, theta, w1)
            bufs = recompute_bn(model, params, buffers, bn_loader, device, args.bn_samples) if bn else buffers
            train_loss, _ = evaluate(model, params, bufs, train_eval, device)
            _, test_acc = evaluate(model, params, bufs, test_eval, device)
            rows.append({"path": name, "t": t, "train_loss": train_loss, "test_acc": test_acc})
        print(f"{name}: max training loss {max(r['train_loss'] for r in rows if r['path'] == name):.4f}", flush=True)
    return rows


def connect(args: argparse.Namespace) -> Dict[str, Any]:
    started = time.time()
    check_args(args)
    cfg_sgd, sd_sgd = load_run(args.sgd_ckpt)
    cfg_grda, sd_grda = load_run(args.grda_ckpt)
    check_same_setup(cfg_sgd, cfg_grda, args.sgd_ckpt, args.grda_ckpt)
    device = choose_device(args.device, "--device")
    batch_size = args.batch_size or int(cfg_sgd.get("trainer", {}).get("batch_size", 128))
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    out = output_dir(args)
    data_cfg, bundle, plain = load_data(cfg_sgd, args.data_root)
    runs = ((args.sgd_ckpt, sd_sgd), (args.grda_ckpt, sd_grda))
    model, w0, w1, buffers = load_endpoints(cfg_sgd, runs, bundle, device)

    eval_bs = int(data_cfg.get("eval_batch_size", 512))
    loaders = (
        DataLoader(plain.train, batch_size=eval_bs, shuffle=False),
        DataLoader(plain.test, batch_size=eval_bs, shuffle=False),
        DataLoader(plain.train, batch_size=batch_size, shuffle=False),
    )
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    curve_loader = DataLoader(
        bundle.train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(args.seed + 1)
    )
    theta, history = train_curve(model, w0, w1, buffers, curve_loader, args.curve_epochs, args.lr, device, gen)
    rows = walk_paths(model, w0, theta, w1, buffers, loaders, args, device)

    line, curve = path_summary(rows, "line"), path_summary(rows, "curve")
    start, end = rows[0], rows[args.points - 1]
    threshold = SAME_VALLEY_FACTOR * max(start["train_loss"], end["train_loss"])
    bn = has_batchnorm(model)
    summary = {
        "sgd_checkpoint": str(args.sgd_ckpt),
        "grda_checkpoint": str(args.grda_ckpt),
        "model": cfg_sgd["model"].get("name"),
        "data": data_cfg.get("name"),
        "points": args.points,
        "curve_epochs": args.curve_epochs,
        "lr": args.lr,
        "batch_size": batch_size,
        "seed": args.seed,
        "device": str(device),
        "batchnorm_recomputed": bn,
        "bn_samples": min(args.bn_samples, len(plain.train)) if bn else None,
        "endpoints": {"sgd": endpoint(start, sd_sgd), "grda": endpoint(end, sd_grda)},
        "line": line,
        "curve": {**curve, "train_history": history},
        "same_valley": curve["max_train_loss"] <= threshold,
        "same_valley_threshold": threshold,
        "criterion": CRITERION,
        "wall_time_s": time.time() - started,
    }
    write_outputs(rows, summary, threshold, out)
    return summary


def endpoint(row: Mapping[str, Any], sd: Params) -> Dict[str, float]:
    totals = summarize(state_dict_sparsity(sd))
    return {"train_loss": row["train_loss"], "test_acc": row["test_acc"], "sparsity": totals["sparsity"]}


def write_outputs(rows: List[Dict[str, Any]], summary: Dict[str, Any], threshold: float, out: Path) -> None:
    """connect.csv, connect.json and connect.png in ``out``, and one line on the console."""
    write_csv(rows, out / "connect.csv")
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out / "connect.json")
    sparsity = summary["endpoints"]["grda"]["sparsity"]
    title = (
        f"{summary['model']} on {summary['data']}: SGD (t=0) to gRDA (t=1, {sparsity:.1f}% zeros); "
        f"curve trained {summary['curve_epochs']} epochs"
    )
    plot(rows, threshold, out / "connect.png", title)
    ends, line, curve = summary["endpoints"], summary["line"], summary["curve"]
    print(
        f"endpoint losses sgd={ends['sgd']['train_loss']:.4f} grda={ends['grda']['train_loss']:.4f}; max loss "
        f"line={line['max_train_loss']:.4f} curve={curve['max_train_loss']:.4f}; "
        f"same_valley={summary['same_valley']} -> {out}",
        flush=True,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sgd_ckpt", help="checkpoint.pth of the SGD run (t = 0)")
    parser.add_argument("grda_ckpt", help="checkpoint.pth of the gRDA run (t = 1)")
    parser.add_argument("--points", type=int, default=61, help="evaluated t per path, 0 and 1 included (default 61)")
    parser.add_argument(
        "--curve-epochs", type=int, default=10, help="epochs training the curve's middle point (default 10)"
    )
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate for the middle point (default 0.1)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="curve training batch (default: the runs' batch size)"
    )
    parser.add_argument(
        "--bn-samples",
        type=int,
        default=10000,
        help="training images for recomputing BatchNorm statistics at each t (default 10000)",
    )
    parser.add_argument("--data-root", default=None, help="dataset location, if not the one stored in the config")
    parser.add_argument("--out", default=None, help="output directory (default: GRDA_CKPT's directory/connect)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the curve's data order and t draws (default 0)")
    parser.add_argument("--threads", type=int, default=-1, help="torch CPU threads; -1: PyTorch's default")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        connect(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
