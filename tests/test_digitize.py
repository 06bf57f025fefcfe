"""The figure digitiser recovers known curves from a synthetic matplotlib figure drawn like the authors' one
(same colours, line width, legend inside the axes, transparent figure background, lines crossing and covering each
other), and its tick calibration lands on the true tick positions. Needs no reference files."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "authors"))
import digitize_authors_figure as dig  # noqa: E402

PLOTTED = np.arange(1, 100, 2)
CURVES = {  # plotting order = legend order, as in the authors' figure
    "SGD": 0.45 + 0.0035 * PLOTTED,  # linear, ends partly under gRDA mu=0.3
    "gRDA mu=0.3": 0.35 + 0.4475 * (1 - np.exp(-PLOTTED / 12)),  # saturating, crosses SGD, partly under Adam
    "gRDA mu=1.0": 0.40 + 0.003 * PLOTTED,  # linear
    "Adam": 0.50 + 0.30 * (1 - np.exp(-PLOTTED / 5)),  # steep start, then on top of gRDA mu=0.3
    "Adagrad": 0.55 + 0.20 * (1 - np.exp(-PLOTTED / 20)),  # black, like the frame
}
X_TICKS, Y_TICKS = (0, 20, 40, 60, 80, 100), (0.4, 0.5, 0.6, 0.7, 0.8)
SPEC = dig.FigureSpec("synthetic", "synthetic.png", tuple(CURVES), X_TICKS, Y_TICKS, "synthetic_overlay.png")
TOLERANCE = 0.002  # data units; half a line width here is 0.0017, the method is expected to do much better
TOLERANCE_HIDDEN = 0.005  # points under other lines: bounded by slivers or interpolated


def draw_synthetic_figure(path: Path) -> dict:
    """Save the figure; return the true tick positions in image pixels (column / row centres)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=600)
    for name, values in CURVES.items():
        ax.plot(PLOTTED, values, color=np.array(dig.LINE_COLOURS[name]) / 255, label=name)
    ax.set_ylim(0.31, 0.86)
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Test accuracy")
    ax.set_title("Synthetic test accuracy")
    ax.legend(loc="lower right")
    fig.patch.set_alpha(0)  # the authors' figure is transparent outside the axes
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    x_ticks = [ax.transData.transform((v, 0.5))[0] - 0.5 for v in ax.get_xticks() if v in X_TICKS]
    y_ticks = [
        height - ax.transData.transform((50, v))[1] - 0.5 for v in ax.get_yticks() if any(np.isclose(v, Y_TICKS))
    ]
    fig.savefig(path)
    plt.close(fig)
    return {"x": sorted(x_ticks), "y": sorted(y_ticks)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("digitize") / "synthetic.png"
    true_ticks = draw_synthetic_figure(path)
    return path, true_ticks, dig.digitize(path, SPEC)


def truth(name: str, epochs: np.ndarray) -> np.ndarray:
    """What the picture shows: the plotted points joined linearly."""
    return np.interp(epochs, PLOTTED, CURVES[name])


def test_calibration_finds_the_ticks(synthetic):
    _, true_ticks, reading = synthetic
    for axis, cal in (("x", reading.x_cal), ("y", reading.y_cal)):
        assert len(cal.tick_px) == len(true_ticks[axis])
        assert np.abs(np.sort(cal.tick_px) - true_ticks[axis]).max() < 1.0, axis
        assert np.abs(cal.residuals_px).max() < 0.6, axis
    assert reading.legend is not None


def test_recovers_the_known_curves(synthetic):
    _, _, reading = synthetic
    table = reading.table()
    assert set(table.optimizer) == set(CURVES)
    for name, rows in table.groupby("optimizer"):
        error = np.abs(rows.value.to_numpy() - truth(name, rows.epoch.to_numpy()))
        read = (rows.status == dig.READ).to_numpy()
        assert read.mean() > 0.9, name
        assert error[read].max() < TOLERANCE, (name, rows.epoch[read].to_numpy()[error[read].argmax()])
        assert np.all(error[~read] < TOLERANCE_HIDDEN), name
        assert len(rows) == 99 or name == "SGD", name  # every epoch except where a line hides under others


def test_partly_covered_lines_are_read_from_their_free_edge(synthetic):
    _, _, reading = synthetic
    segments = [s for c in reading.curves for s in c.segments if s is not None and not s.hidden]
    covered = [s for s in segments if s.n_edge > s.n_centre]
    assert covered, "the synthetic figure should contain partly covered segments"


def test_wrong_tick_values_would_be_caught(synthetic):
    _, _, reading = synthetic
    shifted = dig.calibrate(np.array(reading.y_cal.tick_px), (0.5, 0.6, 0.7, 0.8, 0.9), "y")  # one step off
    table = dataclasses.replace(reading, y_cal=shifted).table()
    adam = table[table.optimizer == "Adam"]
    assert np.abs(adam.value.to_numpy() - truth("Adam", adam.epoch.to_numpy())).min() > TOLERANCE


def test_calibration_refuses_a_wrong_tick_count():
    with pytest.raises(ValueError, match="found 4 tick marks"):
        dig.calibrate(np.array([10.0, 20.0, 30.0, 40.0]), (0, 20, 40, 60, 80, 100), "x")


def test_missing_reference_figures_give_one_line(tmp_path, capsys):
    assert dig.main(["--reference", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reference" in err and "cifar_cnn_acc_test_multiopt.png" in err
    assert not (tmp_path / "out").exists()  # nothing written
