"""The documentation site, as `make docs` builds it and as a reader sees it.

- `mkdocs build --strict` passes (no warning: every link, anchor and API object resolves), and the API reference
  comes from the grda docstrings.
- The reproduction report is generated from results/*.csv: every number on its pages is one a CSV holds (rounded),
  and its statuses follow the targets in docs/report_targets.csv, with our first epochs
  (results/cifar10_vgg16_curves.csv, results/cifar10_wrn28x10_curves.csv) absent or present.
- Every page, served on 127.0.0.1, loads in headless Chromium (Debian's ``chromium``; tests/browser.py drives it
  over the DevTools protocol) with no console error and no failed request, every image loaded and every internal
  link resolving, anchors included. Screenshots of the home page and the report are kept in
  test-artifacts/docs-site/. Without a browser (``apt-get install chromium``; .ci/run installs it) that test is
  skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pandas as pd
import pytest

from tests.browser import Chromium, find_chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "docs-site"
SCREENSHOTS = {"": "home.png", "report/": "report.png", "report/keras-cnn-cifar10/": "report-keras-cnn.png"}

pytestmark = pytest.mark.xdist_group("docs_site")  # one build, on one worker

sys.path.insert(0, str(ROOT / "docs"))
import gen_report  # noqa: E402


def docs_extra_missing() -> str:
    missing = [
        m
        for m in ("mkdocs", "material", "mkdocstrings_handlers.python", "latex2mathml")
        if importlib.util.find_spec(m.split(".")[0]) is None
    ]
    return f"the docs extra is not installed ({', '.join(missing)}): pip install -e '.[docs]'" if missing else ""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if docs_extra_missing():
        pytest.skip(docs_extra_missing())
    out = tmp_path_factory.mktemp("docs") / "site"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr[-8000:]}"
    print(f"mkdocs build --strict: {time.monotonic() - start:.1f} s")
    return out


# ---------------------------------------------------------------- the build


def test_build_has_every_page(site):
    expected = [
        "index.html",
        "quickstart/index.html",
        "api/index.html",
        "hyperparameters/index.html",
        *(f"integrations/{n}/index.html" for n in ("timm", "lightning", "huggingface", "fsdp", "keras")),
        "harness/index.html",
        "harness/clusters/index.html",
        "performance/training/index.html",
        "performance/sparse-inference/index.html",
        "report/index.html",
        *(f"report/{e.slug}/index.html" for e in gen_report.EXPERIMENTS),
    ]
    assert not [p for p in expected if not (site / p).is_file()]


def test_api_reference_comes_from_the_docstrings(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for needle in (
        "accumulator_init",
        "accumulator_seed",
        "layer_sparsity",
        "zero_counts",
        "SparsityCallback",
        "dense_1d_groups",
        "keras.optimizers.Optimizer",
        "Tuning, as the authors advise",
    ):
        assert needle in api, needle
    assert "<math" in api and ":math:" not in api, "the docstrings' math is rendered, not shown as reST"


# ---------------------------------------------------------------- the report: numbers and statuses

NAMES = re.compile(r"ResNet-50|WRN-28-10|CIFAR-100|CIFAR-10|LeNet-5|top-1|top-5|VGG16|FSDP2|Keras 3")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
LINK_TARGET = re.compile(r"\]\([^)]*\)")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w]|\.\d)")


def numbers_in(text: str):
    text = LINK_TARGET.sub("]", CODE.sub(" ", text))
    return NUMBER.findall(NAMES.sub(" ", text))


@functools.lru_cache(maxsize=None)
def csv_numbers(results: Path) -> tuple:
    """What the CSVs hold: every number of every cell (text cells too), as text and as values."""
    texts, values = set(), set()
    for path in [*sorted(results.rglob("*.csv")), gen_report.TARGETS]:
        for cell in pd.read_csv(path, dtype=str, keep_default_na=False).to_numpy().ravel():
            for token in NUMBER.findall(cell):
                texts.add(token)
            try:
                value = abs(float(cell))
            except ValueError:
                continue
            if math.isfinite(value):
                values.add(value)
    return texts, values


def held_by_a_csv(token: str, results: Path) -> bool:
    texts, values = csv_numbers(results)
    if token in texts:
        return True
    digits = len(token.split(".")[1]) if "." in token else 0
    shown = float(token)
    if digits == 0:
        return shown in values
    return any(math.isclose(round(v, digits), shown, abs_tol=10 ** -(digits + 3)) for v in values)


def report_pages(results: Path) -> dict:
    return {name: data.decode() for name, data in gen_report.build(results).items() if name.endswith(".md")}


def test_every_number_in_the_report_is_held_by_a_csv():
    results = ROOT / "results"
    pages = report_pages(results)
    assert len(pages) == len(gen_report.EXPERIMENTS) + 1
    stray = {
        name: sorted({t for t in numbers_in(text) if not held_by_a_csv(t, results)}) for name, text in pages.items()
    }
    assert not {k: v for k, v in stray.items() if v}, "numbers no CSV holds"


def test_the_number_check_sees_a_stray_number():
    results = ROOT / "results"
    page = report_pages(results)["report/keras-cnn-cifar10.md"]
    assert len(numbers_in(page)) > 300
    assert numbers_in("`make 12` [ResNet-50 at 1.5](figures/a9.png) 0.7772 and −0.0134; 3") == [
        "1.5",
        "0.7772",
        "0.0134",
        "3",
    ]
    assert held_by_a_csv("0.7772", results) and held_by_a_csv("0.777", results)
    assert not held_by_a_csv("0.98765", results) and not held_by_a_csv("123457", results)


FIRST_EPOCHS = (  # our first epochs of VGG16 and WRN-28-10 (make_band_figure.py): CSVs, tables and figures
    "*vgg16_table*",
    "cifar10_vgg16_curves.csv",
    "vgg16_curves.png",
    "*wrn28x10_table*",
    "cifar10_wrn28x10_curves.csv",
    "wrn28x10_cifar10_first_epochs.png",
)


@pytest.fixture
def results_copy(tmp_path) -> Path:
    """results/ without our VGG16 and WRN-28-10 first-epoch CSVs, tables and figures, to add them in a test."""
    out = tmp_path / "results"
    shutil.copytree(ROOT / "results", out, ignore=shutil.ignore_patterns(*FIRST_EPOCHS, "bench", "*.md"))
    return out


def status_line(page: str) -> str:
    return next(line for line in page.split("\n") if line.startswith("**Status:"))


def test_report_without_our_vgg16_runs(results_copy):
    page = report_pages(results_copy)["report/vgg16-cifar10.md"]
    assert "not run here" in status_line(page)
    assert "torchrun --standalone --nproc_per_node=1 src/train.py experiment=cifar10_vgg16" in page
    assert "hydra/launcher=submitit_slurm" in page and "make cifar10-vgg16-runs" in page
    assert "90.82" in page, "the authors' final numbers are shown"


def fake_curves(results: Path, model: str, mus: tuple, epochs: int, off_by: float = 0.0) -> None:
    """Our CSV as `scripts/runs/cifar10_runs.py collect --setting vgg16|wrn` writes it: the authors' means of the runs
    SGD and gRDA ``mus`` (the study's c), % zeros ``off_by`` points off (0 where their log has none: their WRN SGD)."""
    band = gen_report.script("make_band_figure")
    study = band.STUDIES[model]
    authors = pd.read_csv(results / study.authors_csv)
    authors = authors[(authors["dataset"] == "cifar10") & (authors["model"] == study.model)]
    rows = []
    for mu in (None, *mus):
        theirs = authors[
            (authors["optimizer"] == ("grda" if mu else "sgd"))
            & ((authors["mu"] == mu) if mu else authors["mu"].isna())
            & (authors["c"].fillna(study.c) == study.c)
            & (authors["epoch"] <= epochs)
        ]
        for _, a in theirs.iterrows():
            rows.append(
                {
                    "optimizer": band.label("grda" if mu else "sgd", mu),
                    "mu": mu,
                    "c": study.c if mu else 0.0,
                    "seed": 1,
                    "epoch": a["epoch"],
                    "lr": 0.1,
                    "train_loss": a["train_loss_mean"],
                    "train_acc": 50.0,
                    "test_loss": 1.0,
                    "test_acc": a["test_acc_mean"],
                    "sparsity": (0.0 if pd.isna(a["sparsity_mean"]) else a["sparsity_mean"]) + off_by,
                    "initial_weights_sha256": "ab" * 32,
                }
            )
    pd.DataFrame(rows).to_csv(results / study.ours_csv, index=False)


def test_report_with_our_vgg16_runs(results_copy):
    fake_curves(results_copy, "vgg16", (0.51, 0.7), epochs=3)
    files = gen_report.build(results_copy)
    page = files["report/vgg16-cifar10.md"].decode()
    assert "partial" in status_line(page) and "epochs 1–3 of 600" in status_line(page)
    assert "within the targets so far" in status_line(page)
    assert "report/figures/vgg16_curves.png" in files, "drawn for the site where no committed figure is"
    assert '=== "gRDA mu=0.7"' in page and "    | 3 | " in page
    fake_curves(results_copy, "vgg16", (0.51, 0.7), epochs=3, off_by=2.5)  # % zeros 2.5 points off: outside
    page = gen_report.build(results_copy)["report/vgg16-cifar10.md"].decode()
    assert "outside the targets" in status_line(page) and "% zeros outside the target at epochs 1, 2, 3" in page


def test_vgg16_page_shows_the_draws_of_a_miss(results_copy):
    fake_curves(results_copy, "vgg16", (0.51, 0.7), epochs=3)
    redraw = results_copy / "cifar10_vgg16_redraw_curves.csv"
    redraw.unlink(missing_ok=True)
    assert "Draws of a miss" not in report_pages(results_copy)["report/vgg16-cifar10.md"]
    ours = pd.read_csv(results_copy / "cifar10_vgg16_curves.csv")
    draw = ours[ours["optimizer"].isin(["gRDA mu=0.7", "SGD"])].assign(seed=2, data_seed=1)
    draw.loc[(draw["epoch"] == 3) & (draw["optimizer"] != "SGD"), "test_acc"] = 99.5  # above all of theirs: out
    draw.to_csv(redraw, index=False)
    page = report_pages(results_copy)["report/vgg16-cifar10.md"]
    tests = page[page.index("## Draws of a miss") : page.index("## The authors' final numbers")]
    assert '=== "gRDA mu=0.7: weights of seed 1, data of seed 1"' in tests, "the run that missed, beside its draws"
    assert '=== "gRDA mu=0.7: weights of seed 2, data of seed 1"' in tests
    assert '=== "SGD: weights of seed 2, data of seed 1"' in tests
    drawn = tests.split('=== "gRDA mu=0.7: weights of seed 2')[1].split('=== "')[0]
    assert "| 99.50 |" in drawn and drawn.count("✗") == 1 and drawn.count("✓") == 2
    assert "within the targets so far" in status_line(page), "a test run does not change the status"
    assert "## gRDA's lag behind SGD" not in page
    spec = importlib.util.spec_from_file_location("lag_behind_sgd", ROOT / "scripts" / "analysis" / "lag_behind_sgd.py")
    lag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lag)
    assert lag.main(["--results", str(results_copy), "--out", str(results_copy)]) == 0
    page = report_pages(results_copy)["report/vgg16-cifar10.md"]
    lags = page[page.index("## gRDA's lag behind SGD") : page.index("## The authors' final numbers")]
    assert (
        "### gRDA mu=0.7, test accuracy (points): SGD − gRDA" in lags
        and "ours (seed 2, data 1)" in lags
        and "# VGG16" not in lags
    )
    assert not [t for t in numbers_in(lags) if not held_by_a_csv(t, results_copy)]
    assert "## Test accuracy at a given train loss" not in page
    spec = importlib.util.spec_from_file_location("acc_given_loss", ROOT / "scripts" / "analysis" / "acc_given_loss.py")
    acc = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = acc
    spec.loader.exec_module(acc)
    assert acc.main(["--results", str(results_copy), "--out", str(results_copy)]) == 0
    built = gen_report.build(results_copy)
    page = built["report/vgg16-cifar10.md"].decode()
    section = page[page.index("## Test accuracy at a given train loss") : page.index("## The authors' final numbers")]
    assert "### Residuals" in section and "| ours, gRDA mu=0.7 (seed 2, data 1) |" in section
    assert "![Test accuracy at a given train loss](figures/vgg16_acc_given_loss.png)" in section
    assert built["report/figures/vgg16_acc_given_loss.png"][:4] == b"\x89PNG"
    csv_numbers.cache_clear()  # results_copy has a new CSV
    assert not [t for t in numbers_in(section) if not held_by_a_csv(t, results_copy)]


def done_wrn_table(results: Path, top1_off: float = 0.2) -> None:
    """results/cifar_table.csv with every WRN-28-10 CIFAR-10 setting run to epoch 200, top-1 ``top1_off`` off."""
    table = gen_report.comparison_table(["cifar10_wrn28x10"], gen_report.NO_RUNS)
    done = table.assign(
        status="done",
        runs=1,
        epoch=table["paper epoch"],
        **{
            "top-1 %": table["paper top-1 %"] + 0.2,
            "sparsity %": table["paper sparsity %"] - 0.5,
            "Δ top-1": 0.2,
            "Δ sparsity": -0.5,
        },
    )
    done.loc[0, "Δ top-1"] = top1_off
    done.to_csv(results / "cifar_table.csv", index=False)


def test_report_with_our_wrn_first_epochs(results_copy):
    assert "first epochs" not in report_pages(results_copy)["report/wrn28x10-cifar10.md"]
    fake_curves(results_copy, "wrn28x10", (0.501,), epochs=2)
    files = gen_report.build(results_copy)
    page = files["report/wrn28x10-cifar10.md"].decode()
    status = status_line(page)
    assert "not run here" in status, "the status follows the final numbers (200 epochs), not the first epochs"
    assert "none of the paper's settings has a finished run yet; first epochs 1–2: within the targets so far" in status
    assert "finished run yet; first epochs 1–2: within the targets so far |" in files["report/index.md"].decode()
    assert (
        "## Our first epochs" in page and "### Where it stands" in page and "### Ours vs theirs, epoch by epoch" in page
    )
    assert "- **SGD**: epochs 1–2 of 200; % zeros within the target at every epoch" in page
    assert '=== "gRDA mu=0.501"' in page and "    | 2 | " in page and "not logged" in page
    assert "- sparsity per epoch: within ±1 at every epoch" in page
    assert "report/figures/wrn28x10_cifar10_first_epochs.png" in files, "drawn for the site where none is committed"
    assert "report/figures/wrn_curves_cifar10.png" in files, "the authors' 200 epochs still shown"
    assert not [t for t in numbers_in(page) if not held_by_a_csv(t, results_copy)]
    (results_copy / "figures" / "wrn28x10_cifar10_first_epochs.png").write_bytes(b"committed")
    pd.DataFrame(
        {
            "optimizer": ["SGD"],
            "epoch": [1],
            "train_loss_delta": [0.0123],
            "test_acc_delta": [-1.5],
            "sparsity_delta": [None],
        }
    ).to_csv(results_copy / "cifar10_wrn28x10_table.csv", index=False)
    files = gen_report.build(results_copy)
    assert files["report/figures/wrn28x10_cifar10_first_epochs.png"] == b"committed"
    assert "| 1 | 1.433 | 1.433 [1.427, 1.441] | +0.012 |" in files["report/wrn28x10-cifar10.md"].decode()
    done_wrn_table(results_copy)  # the 200 epochs within the targets: reproduced while the first epochs are
    page = report_pages(results_copy)["report/wrn28x10-cifar10.md"]
    assert "reproduced" in status_line(page) and "first epochs 1–2: within the targets so far" in status_line(page)
    fake_curves(results_copy, "wrn28x10", (0.501,), epochs=2, off_by=2.5)  # gRDA 2.5 points off, SGD with zeros
    pages = report_pages(results_copy)
    page = pages["report/wrn28x10-cifar10.md"]
    assert "partial" in status_line(page), "a miss in the first epochs keeps the page from reproduced"
    assert "first epochs 1–2: outside the targets at some epochs" in status_line(page)
    assert "first epochs 1–2: outside the targets at some epochs" in pages["report/index.md"]
    for run in ("SGD", "gRDA mu=0.501"):
        assert f"- **{run}**: epochs 1–2 of 200; % zeros outside the target at epochs 1, 2" in page


def test_report_status_follows_the_targets(results_copy):
    done_wrn_table(results_copy)
    assert "reproduced" in status_line(report_pages(results_copy)["report/wrn28x10-cifar10.md"])
    done_wrn_table(results_copy, top1_off=-0.7)  # outside ±0.5
    page = report_pages(results_copy)["report/wrn28x10-cifar10.md"]
    assert "partial" in status_line(page)
    assert "Every setting of this experiment has a finished run." in page


# ---------------------------------------------------------------- in a browser


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """``directory`` over HTTP on 127.0.0.1 (a free port), for the duration of the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


PAGE_FACTS = """(() => ({
  broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
}))()"""


def page_urls(site: Path, base: str):
    for html in sorted(site.rglob("*.html")):
        rel = html.relative_to(site).as_posix()
        yield base + (rel[: -len("index.html")] if rel.endswith("index.html") else rel)


def target_file(site: Path, base: str, url: str) -> Path:
    path = site / unquote(urlparse(url).path).lstrip("/")
    return path / "index.html" if url.endswith("/") or path.is_dir() else path


def visit_all(browser: str, site: Path, base: str, screenshots: dict):
    """Load every page; returns the problems seen, the internal links (page, href) and each page's element ids."""
    problems, links, ids = [], set(), {}
    with Chromium(browser) as chromium:
        for url in page_urls(site, base):
            errors = chromium.load(url)
            facts = chromium.evaluate(PAGE_FACTS)
            problems += [f"{url}: {e}" for e in errors]
            problems += [f"{url}: image not loaded: {src}" for src in facts["broken_images"]]
            ids[url] = set(facts["ids"])
            links |= {(url, href) for href in facts["links"] if href.startswith(base)}
            if url[len(base) :] in screenshots:
                chromium.screenshot(ARTIFACTS / screenshots[url[len(base) :]])
    return problems, links, ids


def check_site(browser: str, site: Path, screenshots: dict = {}) -> tuple:  # noqa: B006 - read only
    """Every page of ``site`` in Chromium: console errors, failed requests, images, internal links and anchors."""
    with serve(site) as base:
        problems, links, ids = visit_all(browser, site, base, screenshots)
        for page, href in sorted(links):
            url, fragment = urldefrag(href)
            if not target_file(site, base, url).is_file():
                problems.append(f"{page}: link to a missing page: {href}")
            elif fragment and url in ids and unquote(fragment) not in ids[url]:
                problems.append(f"{page}: link to a missing anchor: {href}")
    return problems, len(ids), len(links)


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium to drive: apt-get install chromium (Debian's package; .ci/run installs it)")
    return path


def test_the_browser_check_sees_what_is_broken(browser, tmp_path):
    (tmp_path / "ok.html").write_text("<p id='here'>fine</p>")
    (tmp_path / "index.html").write_text(
        "<img src='missing.png'><script>console.error('boom')</script><a href='gone.html'>x</a>"
        "<a href='ok.html#nowhere'>y</a><a href='ok.html#here'>z</a><script>undefined_function()</script>"
    )
    problems, pages, links = check_site(browser, tmp_path)
    text = "\n".join(problems)
    assert pages == 2 and links == 3
    for needle in (
        "console: boom",
        "undefined_function",
        "image not loaded",
        "404",
        "missing page: ",
        "missing anchor: ",
    ):
        assert needle in text, (needle, text)
    assert "#here" not in text


@pytest.mark.slow
def test_every_page_in_chromium(site, browser):
    start = time.monotonic()
    problems, pages, links = check_site(browser, site, SCREENSHOTS)
    print(
        f"{pages} pages and {links} internal links checked in Chromium in {time.monotonic() - start:.1f} s; "
        f"screenshots in {ARTIFACTS}"
    )
    assert pages >= 20 and not problems, "\n".join(problems)
    assert all((ARTIFACTS / name).stat().st_size > 10_000 for name in SCREENSHOTS.values())
