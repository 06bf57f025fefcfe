"""Kill-anywhere resume, guarded checkpoints, divergence, dead DDP ranks, bad input, and safe loading."""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.checkpoint import load_checkpoint, load_weights_from, save_atomic
from src.config import ModelConfig
from src.errors import CheckpointError
from src.models import build_model
from tests.fakedata import make_cifar_folder
from tests.helpers import ROOT, summary, train

COMMON = ["trainer.epochs=4", "optim.c=0.01", "trainer.log_interval=5", "trainer.deterministic=true"]
TIMING = {"wall_time_s", "checkpoint_bytes", "peak_memory_mb"}


def comparable_outputs(run_dir: Path):
    ckpt = torch.load(run_dir / "checkpoint.pth", weights_only=True)
    s = {k: v for k, v in summary(run_dir).items() if k not in TIMING}
    rows = [
        {k: v for k, v in r.items() if k not in ("epoch_time_s", "train_img_per_s")}
        for r in csv.DictReader((run_dir / "metrics.csv").open())
    ]
    return ckpt, s, rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight")
    train(run, *COMMON)
    return comparable_outputs(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", ["train_step:1:20", "train_step:3:7", "eval:2:1", "checkpoint_write:2", "checkpoint_write:4"]
)
def test_kill_anywhere_then_same_command_resumes_bit_identically(tmp_path, uninterrupted, fault):
    killed = train(tmp_path, *COMMON, env={"GRDA_FAULT": fault}, check=False)
    assert killed.returncode == -9, killed.stderr
    if fault.startswith("checkpoint_write"):
        # The crash hit while the epoch's checkpoint was being written: the previous one is intact.
        epoch = int(fault.split(":")[1])
        if epoch > 1:
            assert load_checkpoint(tmp_path / "checkpoint.pth")["epoch"] == epoch - 1
        assert list(tmp_path.glob(".checkpoint.pth.*.tmp"))  # the partial file never replaced it
    train(tmp_path, *COMMON)  # the same command again
    ckpt, s, rows = comparable_outputs(tmp_path)
    want_ckpt, want_s, want_rows = uninterrupted
    for key, value in want_ckpt["model"].items():
        assert torch.equal(value, ckpt["model"][key]), key
    for pid, state in want_ckpt["optimizer"]["state"].items():
        got = ckpt["optimizer"]["state"][pid]
        assert torch.equal(state["accumulator"], got["accumulator"]) and state["tau"] == got["tau"]
        assert state["step"] == got["step"]
    assert s == want_s
    assert rows == want_rows
    assert not list(tmp_path.glob(".checkpoint.pth.*.tmp"))  # the next save cleaned the leftover


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_atomic({"epoch": 1, "w": torch.ones(3)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"epoch": 2, "bad": Unsaveable()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_save_gives_the_mode_the_umask_gives(tmp_path, umask):
    import os
    import stat

    from src.checkpoint import atomic_replace

    def replace_with_private_file(tmp):  # what safetensors' save_file does
        os.unlink(tmp)
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))

    previous = os.umask(umask)
    try:
        save_atomic({"epoch": 1}, tmp_path / "ckpt.pth")
        atomic_replace(tmp_path / "other.bin", replace_with_private_file)
    finally:
        os.umask(previous)
    for name in ("ckpt.pth", "other.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert os.umask(previous) == previous  # the process umask is left as it was


@pytest.mark.slow
def test_divergence_stops_with_step_and_epoch_and_keeps_checkpoint(tmp_path):
    train(tmp_path, "trainer.epochs=2")
    before = (tmp_path / "checkpoint.pth").read_bytes()
    proc = train(
        tmp_path, "trainer.epochs=4", "optim.lr=1e30", "optim.c=0", "trainer.allow_config_change=true", check=False
    )
    assert proc.returncode == 2
    assert re.search(r"non-finite at step \d+ \(epoch 3\)", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "checkpoint.pth").read_bytes() == before


@pytest.mark.slow
def test_allowed_config_change_takes_effect(tmp_path):
    train(tmp_path, "trainer.epochs=1")
    train(tmp_path, "trainer.epochs=2", "optim.lr=0.05", "optim.mu=0.6", "trainer.allow_config_change=true")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [float(r["lr"]) for r in rows] == [0.3, 0.05]
    groups = torch.load(tmp_path / "checkpoint.pth", weights_only=True)["optimizer"]["param_groups"]
    assert groups[0]["mu"] == 0.6 and groups[0]["lr"] == 0.05


@pytest.mark.slow
def test_ddp_dead_rank_fails_fast_naming_the_rank(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "src/train.py",
        f"hydra.run.dir={tmp_path}",
        "trainer.epochs=3",
        "trainer.progress=false",
        "trainer.device=cpu",
        "trainer.threads=1",
    ]
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "GRDA_FAULT": "train_step:2:5@1"},
    )
    elapsed = time.time() - start
    assert proc.returncode != 0
    assert elapsed < 60 + 30, elapsed  # start-up included
    out = proc.stdout + proc.stderr
    assert re.search(r"rank\s*:\s*1", out), out[-3000:]
    assert load_checkpoint(tmp_path / "checkpoint.pth")["epoch"] == 1  # the good checkpoint survived


@pytest.mark.slow
def test_ddp_nonfinite_loss_on_one_rank_stops_every_rank_at_once(tmp_path):
    """Rank 1 alone sees a NaN loss at global step 50, a logging step (epoch 2, step 5 of 45): both ranks stop with
    the same one line at that check, not rank 0 waiting out the DDP timeout in its next collective."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29541",
        "src/train.py",
        f"hydra.run.dir={tmp_path}",
        "trainer.epochs=3",
        "trainer.progress=false",
        "trainer.device=cpu",
        "trainer.threads=1",
        "trainer.ddp_timeout_s=150",
    ]
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "GRDA_FAULT": "nan_loss:2:5@1"},
    )
    elapsed = time.time() - start
    assert proc.returncode != 0
    line = "error: the training loss became non-finite at step 50 (epoch 2) on rank 1; the run stopped"
    assert proc.stderr.count(line) == 2, proc.stderr[-3000:]  # once from each rank
    assert "lost contact" not in proc.stderr
    assert elapsed < 90, elapsed  # start-up included; far below the 150 s a waiting rank would take
    assert load_checkpoint(tmp_path / "checkpoint.pth")["epoch"] == 1  # the good checkpoint survived


# ------------------------------------------------------------------------- bad input


def one_line_error(proc, *fragments, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
@pytest.mark.parametrize("group", ["model", "data", "optim", "experiment", "schedule"])
def test_unknown_names_list_the_choices(tmp_path, group):
    proc = train(tmp_path, f"{group}=nope", check=False)
    assert proc.returncode != 0
    assert f"Could not find '{group}/nope'" in proc.stderr and "Available options" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,fragment",
    [
        ("trainer.epochs=ten", "trainer.epochs"),
        ("optim.lr=fast", "optim.lr"),
        ("trainer.nonsense=1", "trainer.nonsense"),
    ],
)
def test_wrong_types_and_keys_name_the_key(tmp_path, override, fragment):
    proc = train(tmp_path, override, check=False)
    assert proc.returncode != 0 and fragment in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_data_problems(tmp_path):
    one_line_error(
        train(tmp_path / "r1", "experiment=cifar10_keras_cnn", f"data.root={tmp_path / 'none'}", check=False),
        "not found",
        str(tmp_path / "none"),
        "data.root",
    )
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir(parents=True)
    one_line_error(
        train(tmp_path / "r2", "experiment=cifar10_keras_cnn", f"data.root={tmp_path / 'empty'}", check=False),
        str(tmp_path / "empty"),
    )
    make_cifar_folder(tmp_path / "corrupt", n_train=2, n_test=1)
    bad = tmp_path / "corrupt" / "train" / "cat" / "0001.png"
    bad.write_bytes(b"not an image at all")
    one_line_error(
        train(tmp_path / "r3", "experiment=cifar10_keras_cnn", f"data.root={tmp_path / 'corrupt'}", check=False),
        "0001.png",
    )
    one_line_error(train(tmp_path / "r4", "data.train_subset=0", check=False), "train_subset")


def digits_mlp(hidden=(128, 128)):
    return build_model(OmegaConf.structured(ModelConfig(name="mlp", hidden=list(hidden))), 10, (1, 8, 8))


def init_mlp_from(path, hidden=(128, 128)):
    """What train.py does with model.init_from, in-process: the digits MLP loaded from ``path``."""
    model = digits_mlp(hidden)
    load_weights_from(model, path)
    return model


@pytest.mark.slow
def test_init_from_problems_are_one_line_errors(tmp_path):
    """End to end once (exit code, one line, no traceback); the loader's other messages in-process below."""
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "other.pth")
    one_line_error(
        train(tmp_path / "r1", f"model.init_from={tmp_path / 'other.pth'}", check=False),
        "does not fit this model",
        "missing key 'layers.fc1.weight'",
    )


def test_init_from_problems_name_the_file_and_the_fix(tmp_path):
    good = tmp_path / "ok.pth"
    saved = {"model": digits_mlp().state_dict(), "epoch": 1}
    torch.save(saved, good)
    assert torch.equal(init_mlp_from(good).state_dict()["layers.fc1.weight"], saved["model"]["layers.fc1.weight"])
    with pytest.raises(CheckpointError, match=r"does not fit this model: 'layers.fc1.weight' has shape"):
        init_mlp_from(good, hidden=(64, 128))
    assert torch.load(good, weights_only=True)["epoch"] == 1  # the good file is untouched by the failed load
    (tmp_path / "trunc.pth").write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"trunc.pth' is not a readable PyTorch checkpoint"):
        init_mlp_from(tmp_path / "trunc.pth")
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*missing.pth"):
        init_mlp_from(tmp_path / "missing.pth")
    (tmp_path / "notes.pth").write_text("just text")
    with pytest.raises(CheckpointError, match=r"notes.pth"):
        init_mlp_from(tmp_path / "notes.pth")
    torch.save({"model": {"w": "not a tensor"}}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match=r"empty.pth' holds no model weights"):
        init_mlp_from(tmp_path / "empty.pth")


@pytest.mark.slow
def test_corrupt_run_checkpoint_is_reported_not_overwritten(tmp_path):
    train(tmp_path, "trainer.epochs=1")
    (tmp_path / "checkpoint.pth").write_bytes(b"garbage")
    proc = train(tmp_path, "trainer.epochs=1", check=False)
    one_line_error(proc, "checkpoint.pth", "not a readable PyTorch checkpoint")
    assert (tmp_path / "checkpoint.pth").read_bytes() == b"garbage"


def hold_lock(run_dir: Path, holder: str):
    """The run directory's lock, held as another process's run would hold it (its own open file)."""
    import fcntl

    lock = open(run_dir / ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lock.write(holder + "\n")
    lock.flush()
    return lock


@pytest.mark.slow
def test_run_directory_in_use_is_refused_and_left_alone(tmp_path):
    """A second `src/train.py` on a directory another process is training in stops with one line naming that
    process, and touches nothing saved there."""
    (tmp_path / "checkpoint.pth").write_bytes(b"the other run's checkpoint")
    with hold_lock(tmp_path, "pid 4242 on node7"):
        proc = train(tmp_path, "trainer.epochs=1", check=False)
    one_line_error(proc, str(tmp_path), "in use by pid 4242 on node7", "hydra.run.dir")
    assert (tmp_path / "checkpoint.pth").read_bytes() == b"the other run's checkpoint"
    assert not (tmp_path / "config.yaml").exists()


def test_run_directory_claim_lasts_until_released(tmp_path):
    from src.errors import UserError
    from src.run_dir import claim_run_dir, release_run_dirs

    with hold_lock(tmp_path, "pid 1 on elsewhere"):
        with pytest.raises(UserError, match="in use by pid 1 on elsewhere"):
            claim_run_dir(tmp_path)
    try:
        claim_run_dir(tmp_path)
        claim_run_dir(tmp_path)  # the same process again (an in-process sweep, a test): already ours
        assert (tmp_path / ".lock").read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"
        with pytest.raises(BlockingIOError):  # anyone else is kept out meanwhile
            hold_lock(tmp_path, "intruder")
    finally:
        release_run_dirs()
    hold_lock(tmp_path, "next run").close()  # released: the next run may take it


@pytest.mark.slow
def test_unwritable_run_directory(tmp_path):
    (tmp_path / "a_file").write_text("x")
    one_line_error(train(tmp_path / "a_file" / "run", check=False), "cannot create the run directory")


# --------------------------------------------------------------------------- security


def test_no_unsafe_loading_or_shell_in_source():
    sources = {p: p.read_text() for p in list((ROOT / "src").rglob("*.py")) + list((ROOT / "scripts").rglob("*.py"))}
    for path, text in sources.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text, path
        if path.name != "cifar.py":
            assert "pickle.load" not in text and "pickle.Unpickler" not in text, path


def test_checkpoint_with_code_is_refused(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
