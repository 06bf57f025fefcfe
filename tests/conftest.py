import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

# Module and session fixtures that train (seconds to minutes each). xdist builds such a fixture on every worker that
# runs a test using it; `make test` (--dist loadgroup) sends all the tests of one to the same worker instead.
COSTLY_FIXTURES = ("preset_runs", "digits_runs", "connect_runs", "uninterrupted", "grda_run", "installed_wheel")


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        used = [name for name in COSTLY_FIXTURES if name in item.fixturenames]
        if len(used) > 1:
            raise pytest.UsageError(f"{item.nodeid} uses {used}: one costly fixture per test, or group them together")
        if used:
            item.add_marker(pytest.mark.xdist_group(used[0]))
            item.add_marker(pytest.mark.slow)  # it trains: an end-to-end test, not in make test-fast


@pytest.fixture(scope="session")
def preset_runs(tmp_path_factory):
    """Every paper preset trained at tiny size on generated data, under one runs/ tree."""
    from tests.fakedata import make_cifar_folder, make_imagenet, make_mnist
    from tests.helpers import train

    base = tmp_path_factory.mktemp("presets")
    data, runs = base / "data", base / "runs"
    make_cifar_folder(data / "cifar", n_train=4, n_test=2)
    make_imagenet(data / "imagenet", n=2)
    make_mnist(data / "mnist", n_train=16, n_test=8)
    tiny_wrn = ["model.depth=10", "model.widen_factor=1", "trainer.epochs=2", "trainer.batch_size=4"]
    plan = {
        "cifar10_keras_cnn": [f"data.root={data / 'cifar'}", "trainer.epochs=2"],
        "cifar10_wrn28x10": [f"data.root={data / 'cifar'}", *tiny_wrn],
        "cifar100_wrn28x10": [f"data.root={data / 'cifar'}", *tiny_wrn],
        "cifar10_vgg16": [f"data.root={data / 'cifar'}", "trainer.epochs=1", "trainer.batch_size=4"],
        "imagenet_resnet50": [
            f"data.root={data / 'imagenet'}",
            "trainer.epochs=1",
            "trainer.batch_size=2",
            "data.eval_batch_size=2",
            "trainer.workers=0",
        ],
        "mnist_lenet5": [f"data.root={data / 'mnist'}", "trainer.epochs=3"],
    }
    out = {}
    for preset, overrides in plan.items():
        out[preset] = runs / preset / "tiny"
        train(out[preset], f"experiment={preset}", *overrides)
    out["runs"] = runs
    return out
