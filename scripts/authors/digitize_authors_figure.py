#!/usr/bin/env python
"""Digitise the authors' two Keras-CNN CIFAR-10 figures (test accuracy, nonzero-weight ratio) into numbers.

    .venv/bin/python scripts/authors/digitize_authors_figure.py [--reference ../shared/reference] [--out results]
                                                        [--no-check]

Reads cifar_cnn_acc_test_multiopt.png and cifar_cnn_nonzero_weights_multiopt.png (matplotlib PNGs, legend inside
the axes) and writes
  results/authors_keras_cnn_curves.csv   figure,optimizer,epoch,value   (every integer epoch 1..99)
  results/authors_keras_cnn_curves.md    provenance, calibration residuals, reading error, interpolated points
  results/figures/authors_keras_cnn_digitized_{acc,nonzero}.png   the points redrawn on the picture (--check)

How: the black axes frame is the pair of longest dark rows and columns; the tick marks just outside the bottom and
left spines are found in the image and mapped to their printed values (the only hard-coded numbers) by a
least-squares line; the legend box (its light-grey frame) is masked; every pixel inside the axes is classified to the
nearest line colour (RGB distance under a tolerance, else "unclassified"). The authors plotted epochs 1, 3, ..., 99
and matplotlib joins them by straight segments, so each segment is read on its own: in every pixel column inside it
(away from the joins) the vertical run of the line's colour gives the line's centre (both ends on background or on
a line drawn earlier, which lies underneath) or one edge (the other end covered by a line drawn later; centre = edge
-/+ half the expected run length); a straight line fitted robustly through these centres is the segment. A plotted
point is the mean of its two segments' ends, an even epoch is read on its segment. A segment hidden under others is
bounded by the slivers of it that show, or, if none show, its epochs are interpolated between the nearest readings.
The functions are importable (tests/test_digitize.py runs them on a synthetic figure).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

LINE_COLOURS = {  # matplotlib named colours the authors used
    "SGD": (64, 224, 208),  # turquoise
    "SGD Nesterov": (165, 42, 42),  # brown
    "gRDA mu=0.3": (0, 0, 255),  # blue
    "gRDA mu=0.51": (255, 165, 0),  # orange
    "gRDA mu=0.7": (0, 128, 0),  # green
    "gRDA mu=1.0": (255, 0, 0),  # red
    "Adam": (255, 255, 0),  # yellow
    "Adagrad": (0, 0, 0),  # black
}
BACKGROUND = (255, 255, 255)
LEGEND_EDGE = (214, 214, 214)  # legend edgecolor 0.8 at framealpha 0.8 on white
PLOTTED_EPOCHS = np.arange(1, 100, 2)
ALL_EPOCHS = np.arange(1, 100)

COLOUR_TOLERANCE = 40.0  # RGB distance to a pure colour to count as that colour (anti-aliased edges fall outside)
DARK_LEVEL = 128  # max channel below this: part of the black frame, ticks or text
TICK_BAND_PX = 6  # rows (columns) just outside the spine that hold only tick marks
MIN_RUN_PX = 2  # shorter runs of a colour are blends at crossings, not lines
FIT_CUTOFF_PX = 2.0  # column readings further than this (perpendicular) from the segment line are outliers
MIN_READABLE_FRACTION = 0.2  # of a segment's columns; fewer and the segment counts as hidden

UNCLASSIFIED, MASKED, BACKGROUND_LABEL = -1, -2, 0


@dataclass(frozen=True)
class FigureSpec:
    name: str  # the CSV's figure column
    filename: str
    optimizers: tuple[str, ...]
    x_ticks: tuple[float, ...]
    y_ticks: tuple[float, ...]
    overlay: str
    zooms: tuple[tuple[float, float, float, float], ...] = ()  # (epoch from, to, value from, to) shown enlarged


FIGURES = (
    FigureSpec(
        "test_acc",
        "cifar_cnn_acc_test_multiopt.png",
        ("SGD", "SGD Nesterov", "gRDA mu=0.3", "gRDA mu=0.51", "gRDA mu=0.7", "gRDA mu=1.0", "Adam", "Adagrad"),
        (0, 20, 40, 60, 80, 100),
        (0.4, 0.5, 0.6, 0.7, 0.8),
        "authors_keras_cnn_digitized_acc.png",
        ((0, 12, 0.32, 0.80), (40, 70, 0.77, 0.835), (70, 100, 0.77, 0.835)),
    ),
    FigureSpec(
        "nonzero_ratio",
        "cifar_cnn_nonzero_weights_multiopt.png",
        ("gRDA mu=0.3", "gRDA mu=0.51", "gRDA mu=0.7", "gRDA mu=1.0"),
        (0, 20, 40, 60, 80, 100),
        (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
        "authors_keras_cnn_digitized_nonzero.png",
        ((0, 14, 0.0, 1.0), (8, 22, 0.0, 0.1), (0, 30, 0.8, 1.0)),
    ),
)


# ---------------------------------------------------------------- image and frame


def load_rgb(path: Path) -> np.ndarray:
    """The picture as H x W x 3 uint8, transparent parts composited onto white."""
    image = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", image.size, (*BACKGROUND, 255))
    return np.asarray(Image.alpha_composite(white, image).convert("RGB"))


def runs_along_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first column, last column) of every horizontal run of True."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, stops = np.nonzero(step == -1)
    return rows, starts, stops - 1


def longest_run_per_row(mask: np.ndarray) -> np.ndarray:
    rows, first, last = runs_along_rows(mask)
    longest = np.zeros(mask.shape[0], dtype=int)
    np.maximum.at(longest, rows, last - first + 1)
    return longest


def consecutive_groups(indices: np.ndarray) -> list[np.ndarray]:
    return np.split(indices, np.flatnonzero(np.diff(indices) > 1) + 1) if len(indices) else []


@dataclass(frozen=True)
class AxesFrame:
    """Pixel rows/columns (first, last) covered by each spine."""

    top: tuple[int, int]
    bottom: tuple[int, int]
    left: tuple[int, int]
    right: tuple[int, int]

    def interior(self, pad: int = 2) -> tuple[slice, slice]:
        return (slice(self.top[1] + 1 + pad, self.bottom[0] - pad), slice(self.left[1] + 1 + pad, self.right[0] - pad))


def spine_pair(longest: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """The first and last band of lines whose longest dark run is near the longest of all."""
    groups = consecutive_groups(np.flatnonzero(longest >= 0.8 * longest.max()))
    if len(groups) < 2:
        raise ValueError("could not find two parallel spines of the axes frame")
    return (int(groups[0][0]), int(groups[0][-1])), (int(groups[-1][0]), int(groups[-1][-1]))


def find_axes_frame(rgb: np.ndarray) -> AxesFrame:
    dark = rgb.max(axis=2) < DARK_LEVEL
    top, bottom = spine_pair(longest_run_per_row(dark))
    left, right = spine_pair(longest_run_per_row(dark.T))
    return AxesFrame(top, bottom, left, right)


# ---------------------------------------------------------------- ticks and calibration


def darkness(rgb: np.ndarray) -> np.ndarray:
    return 1.0 - rgb.astype(float).mean(axis=2) / 255.0


def weighted_peak_centres(profile: np.ndarray, offset: int) -> np.ndarray:
    """Darkness-weighted centre of every stretch of the profile above half its maximum."""
    above = profile > 0.5 * profile.max()
    _, first, last = runs_along_rows(above[None, :])
    idx = [np.arange(a, b + 1) for a, b in zip(first, last)]
    return np.array([offset + (i * profile[i]).sum() / profile[i].sum() for i in idx])


def find_x_ticks(rgb: np.ndarray, frame: AxesFrame) -> np.ndarray:
    """Column centres (px, sub-pixel) of the tick marks under the bottom spine, left to right."""
    rows = slice(frame.bottom[1] + 2, frame.bottom[1] + 2 + TICK_BAND_PX)
    cols = slice(frame.left[0] - 5, frame.right[1] + 6)
    return weighted_peak_centres(darkness(rgb[rows, cols]).sum(axis=0), cols.start)


def find_y_ticks(rgb: np.ndarray, frame: AxesFrame) -> np.ndarray:
    """Row centres (px, sub-pixel) of the tick marks left of the left spine, top to bottom."""
    cols = slice(frame.left[0] - 2 - TICK_BAND_PX, frame.left[0] - 2)
    rows = slice(frame.top[0] - 5, frame.bottom[1] + 6)
    return weighted_peak_centres(darkness(rgb[rows, cols]).sum(axis=1), rows.start)


@dataclass(frozen=True)
class AxisCalibration:
    """pixel = intercept + slope * value, fitted to the tick marks."""

    intercept: float
    slope: float
    tick_px: tuple[float, ...]
    tick_values: tuple[float, ...]

    def to_px(self, value):
        return self.intercept + self.slope * np.asarray(value, dtype=float)

    def to_value(self, px):
        return (np.asarray(px, dtype=float) - self.intercept) / self.slope

    @property
    def residuals_px(self) -> np.ndarray:
        return np.asarray(self.tick_px) - self.to_px(self.tick_values)


def calibrate(tick_px: np.ndarray, tick_values: tuple[float, ...], axis: str) -> AxisCalibration:
    """Least-squares line from tick values to tick pixels; ticks are matched in order along the axis."""
    values = sorted(tick_values, reverse=(axis == "y"))  # pixel rows grow downwards
    if len(tick_px) != len(values):
        raise ValueError(
            f"{axis} axis: found {len(tick_px)} tick marks at px {np.round(tick_px, 1)}, "
            f"expected {len(values)} for values {tick_values}"
        )
    slope, intercept = np.polyfit(values, tick_px, 1)
    return AxisCalibration(float(intercept), float(slope), tuple(map(float, tick_px)), tuple(map(float, values)))


# ---------------------------------------------------------------- legend and colours


def find_legend_box(rgb: np.ndarray, frame: AxesFrame, pad: int = 4) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) px of the legend frame inside the axes, padded; None if there is none."""
    rows, cols = frame.interior()
    grey = np.zeros(rgb.shape[:2], dtype=bool)
    grey[rows, cols] = np.all(np.abs(rgb[rows, cols].astype(int) - LEGEND_EDGE) <= 8, axis=2)
    min_len = 0.03 * (cols.stop - cols.start)
    long_rows = np.flatnonzero(longest_run_per_row(grey) >= min_len)
    long_cols = np.flatnonzero(longest_run_per_row(grey.T) >= min_len)
    if len(long_rows) < 2 or len(long_cols) < 2:
        return None
    return (
        int(long_rows.min()) - pad,
        int(long_rows.max()) + pad,
        int(long_cols.min()) - pad,
        int(long_cols.max()) + pad,
    )


def classify_colours(
    rgb: np.ndarray, colours: list[tuple[int, int, int]], frame: AxesFrame, legend: tuple[int, int, int, int] | None
) -> np.ndarray:
    """Label per pixel: 0 background, k = 1.. the k-th colour, -1 unclassified, -2 outside the axes or legend."""
    palette = [BACKGROUND, *colours]
    rows, cols = frame.interior()
    inside = rgb[rows, cols].astype(np.int32)
    best = np.full(inside.shape[:2], int(COLOUR_TOLERANCE**2) + 1, dtype=np.int32)  # squared RGB distance
    label = np.full(inside.shape[:2], UNCLASSIFIED, dtype=np.int8)
    for k, colour in enumerate(palette):
        dist2 = sum((inside[..., c] - colour[c]) ** 2 for c in range(3))
        closer = dist2 < best
        label[closer], best[closer] = k, dist2[closer]
    labels = np.full(rgb.shape[:2], MASKED, dtype=np.int8)
    labels[rows, cols] = label
    if legend is not None:
        top, bottom, left, right = legend
        labels[top : bottom + 1, left : right + 1] = MASKED
    return labels


# ---------------------------------------------------------------- reading the lines


@dataclass
class ColumnRuns:
    """Vertical runs of one colour: column, first and last row, whether each end is the line's true edge (free)
    and whether it borders plain background."""

    col: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    top_free: np.ndarray
    bottom_free: np.ndarray
    top_on_background: np.ndarray
    bottom_on_background: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.bottom - self.top + 1

    def select(self, keep: np.ndarray) -> "ColumnRuns":
        return ColumnRuns(**{name: value[keep] for name, value in vars(self).items()})


def nearest_classified_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the row of the nearest classified pixel (not a colour blend) at or above it, and at or below it
    (-1 / height when there is none)."""
    height = labels.shape[0]
    row = np.arange(height, dtype=np.int32)[:, None]
    classified = labels != UNCLASSIFIED
    above = np.maximum.accumulate(np.where(classified, row, -1), axis=0)
    below = np.minimum.accumulate(np.where(classified, row, height)[::-1], axis=0)[::-1]
    return above, below


def colour_runs(labels: np.ndarray, k: int, neighbours: tuple[np.ndarray, np.ndarray]) -> ColumnRuns:
    """Runs of colour k. An end is free (the line's true edge) when the first classified pixel beyond it, past the
    anti-aliased blend, is background or a line drawn before line k (labels follow the plotting order, so such a
    line lies underneath and cannot cover line k)."""
    rows_t, first, last = runs_along_rows((labels == k).T)  # rows of the transpose are columns
    keep = last - first + 1 >= MIN_RUN_PX
    col, top, bottom = rows_t[keep], first[keep], last[keep]
    height = labels.shape[0]
    above, below = neighbours
    row_above = above[np.maximum(top - 1, 0), col]
    row_below = below[np.minimum(bottom + 1, height - 1), col]
    label_above = np.where((top > 0) & (row_above >= 0), labels[np.maximum(row_above, 0), col], MASKED)
    label_below = np.where(
        (bottom < height - 1) & (row_below < height), labels[np.minimum(row_below, height - 1), col], MASKED
    )
    return ColumnRuns(
        col,
        top,
        bottom,
        is_underneath(label_above, k),
        is_underneath(label_below, k),
        label_above == BACKGROUND_LABEL,
        label_below == BACKGROUND_LABEL,
    )


def is_underneath(label: np.ndarray, k: int) -> np.ndarray:
    """Background or a line plotted before line k."""
    return (label >= BACKGROUND_LABEL) & (label < k)


@dataclass
class SegmentFit:
    """Centre row = intercept + slope * column, between two plotted epochs."""

    intercept: float
    slope: float
    n_columns: int  # columns inside the segment, away from the joins
    n_centre: int  # columns read from a whole run
    n_edge: int  # columns read from one free edge (the other end covered by another line)
    rms_px: float
    bound_px: float = 0.0  # > 0: line hidden, centre only bounded (+/- this) by the slivers that show

    @property
    def hidden(self) -> bool:
        return self.bound_px > 0

    def row_at(self, col):
        return self.intercept + self.slope * np.asarray(col, dtype=float)


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(np.unique(x)) < 2:
        return float(np.mean(y)), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def nearest_per_column(cols: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Mask choosing, in every column, the candidate with the smallest |residual|."""
    order = np.lexsort((np.abs(residual), cols))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cols[order][1:] != cols[order][:-1]
    chosen = np.zeros(len(cols), dtype=bool)
    chosen[order[first]] = True
    return chosen


def centre_estimates(runs: ColumnRuns, run_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre row per run: whole runs give their middle, runs with one free edge give edge -/+ half a run."""
    whole = (runs.top_free & runs.bottom_free) | (np.abs(runs.length - run_length) <= max(2.0, 0.1 * run_length))
    half = (run_length - 1) / 2
    centre = np.where(whole, (runs.top + runs.bottom) / 2, np.where(runs.top_free, runs.top + half, runs.bottom - half))
    usable = whole | runs.top_free | runs.bottom_free
    return centre[usable], runs.col[usable], whole[usable]


def robust_segment(
    cols: np.ndarray, rows: np.ndarray, whole: np.ndarray, first_guess: tuple[float, float], n_columns: int
) -> SegmentFit | None:
    """Straight line through the column readings, one per column, dropping readings off the line."""
    intercept, slope = first_guess
    keep = np.zeros(len(cols), dtype=bool)
    for cutoff in (6 * FIT_CUTOFF_PX, 3 * FIT_CUTOFF_PX, FIT_CUTOFF_PX, FIT_CUTOFF_PX):
        residual = (rows - (intercept + slope * cols)) / np.hypot(1.0, slope)  # perpendicular distance
        keep = nearest_per_column(cols, residual) & (np.abs(residual) <= cutoff)
        if keep.sum() < max(3, MIN_READABLE_FRACTION * n_columns):
            return None
        intercept, slope = line_fit(cols[keep], rows[keep])
    rms = float(np.sqrt(np.mean((rows[keep] - (intercept + slope * cols[keep])) ** 2)))  # vertical px
    return SegmentFit(intercept, slope, n_columns, int((keep & whole).sum()), int((keep & ~whole).sum()), rms)


def first_guess(runs: ColumnRuns) -> tuple[float, float] | None:
    """Line through the middle of the longest run in each column (rough: partial runs are biased)."""
    if len(runs.col) < 3:
        return None
    longest = nearest_per_column(runs.col, -runs.length.astype(float))
    return line_fit(runs.col[longest], (runs.top[longest] + runs.bottom[longest]) / 2)


def read_segment(runs: ColumnRuns, col_range: tuple[int, int], flat_run_px: float) -> SegmentFit | None:
    """The segment read from its columns; if too few are readable, bounded by the slivers that show."""
    lo, hi = col_range
    here = runs.select((runs.col >= lo) & (runs.col <= hi))
    guess = first_guess(here)
    if guess is None:
        return None
    fit = None
    for _ in range(3):  # the expected run length depends on the slope, the slope on the readings
        run_length = flat_run_px * np.hypot(1.0, guess[1])
        rows, cols, whole = centre_estimates(here, run_length)
        fit = robust_segment(cols.astype(float), rows, whole, guess, hi - lo + 1)
        if fit is None:
            return bounded_segment(here, flat_run_px, guess, hi - lo + 1)
        guess = (fit.intercept, fit.slope)
    return fit


def bounded_segment(
    runs: ColumnRuns, flat_run_px: float, guess: tuple[float, float], n_columns: int
) -> SegmentFit | None:
    """A hidden segment: every visible sliver lies on the line, so in each column the centre is within half a run
    of the sliver's far ends; the middle of that interval is the reading, its half-width the bound."""
    cols, column_of_run = np.unique(runs.col, return_inverse=True)
    if len(cols) < max(3, MIN_READABLE_FRACTION * n_columns):
        return None
    lowest_top = np.full(len(cols), np.inf)
    highest_bottom = np.full(len(cols), -np.inf)
    np.minimum.at(lowest_top, column_of_run, runs.top)
    np.maximum.at(highest_bottom, column_of_run, runs.bottom)
    slope, fit = guess[1], None
    for _ in range(3):
        half = (flat_run_px * np.hypot(1.0, slope) - 1) / 2
        upper, lower = highest_bottom - half, lowest_top + half  # rows: centre in [upper, lower]
        ok = upper <= lower + 1
        middle = (upper + lower) / 2
        start = line_fit(cols[ok], middle[ok]) if ok.sum() >= 2 else guess
        fit = robust_segment(cols[ok].astype(float), middle[ok], np.zeros(ok.sum(), bool), start, n_columns)
        if fit is None:
            return None
        slope = fit.slope
    fit.bound_px = float(max(np.median((lower - upper)[ok]) / 2, 0.5))
    return fit


def segment_columns(x_cal: AxisCalibration, epochs: np.ndarray, margin_px: float) -> list[tuple[int, int]]:
    """Pixel columns strictly inside each segment, margin_px away from both joins."""
    x = x_cal.to_px(epochs)
    return [(int(np.ceil(a + margin_px)), int(np.floor(b - margin_px))) for a, b in zip(x[:-1], x[1:])]


def flat_run_length(runs_per_curve: list[ColumnRuns]) -> float:
    """Run length of a line in a column where it is flat (= its width in px): the commonest length of runs with
    background at both ends."""
    lengths = np.concatenate([r.length[r.top_on_background & r.bottom_on_background] for r in runs_per_curve])
    counts = np.bincount(lengths)
    return float(np.argmax(counts[MIN_RUN_PX:]) + MIN_RUN_PX)


# ---------------------------------------------------------------- from segments to epochs

READ, BOUNDED, INTERPOLATED, MISSING = "read", "hidden-bounded", "interpolated", "missing"


@dataclass
class CurveReading:
    optimizer: str
    segments: list[SegmentFit | None]
    epochs: np.ndarray
    rows_px: np.ndarray  # centre row per epoch (NaN where missing)
    status: np.ndarray  # READ, BOUNDED, INTERPOLATED or MISSING per epoch
    bound_px: np.ndarray  # per epoch: +/- px for BOUNDED readings, else 0
    join_disagreement_px: np.ndarray  # |left - right segment| at each plotted point where both are read

    @property
    def interpolated(self) -> np.ndarray:
        return self.status == INTERPOLATED


def vertex_reading(left: SegmentFit | None, right: SegmentFit | None, x: float) -> tuple[float, str, float, float]:
    """(row, status, bound px, disagreement px) at a plotted point from the segments meeting there; segments read
    directly win over hidden ones."""
    direct = [s for s in (left, right) if s is not None and not s.hidden]
    hidden = [s for s in (left, right) if s is not None and s.hidden]
    if direct:
        ends = [s.row_at(x) for s in direct]
        return float(np.mean(ends)), READ, 0.0, abs(ends[0] - ends[1]) if len(ends) == 2 else np.nan
    if hidden:
        return float(np.mean([s.row_at(x) for s in hidden])), BOUNDED, max(s.bound_px for s in hidden), np.nan
    return np.nan, MISSING, 0.0, np.nan


def read_epochs(
    segments: list[SegmentFit | None], x_cal: AxisCalibration, plotted: np.ndarray, epochs: np.ndarray
) -> CurveReading:
    """Centre row at every epoch: plotted points from their segments' ends, others from their segment; gaps
    between readings are filled linearly (INTERPOLATED)."""
    rows = np.full(len(epochs), np.nan)
    status = np.full(len(epochs), MISSING, dtype=object)
    bound = np.zeros(len(epochs))
    disagreement = []
    for j, epoch in enumerate(epochs):
        i = int(np.searchsorted(plotted, epoch))
        x = float(x_cal.to_px(epoch))
        if i < len(plotted) and plotted[i] == epoch:
            left = segments[i - 1] if i > 0 else None
            right = segments[i] if i < len(segments) else None
            rows[j], status[j], bound[j], gap = vertex_reading(left, right, x)
            disagreement.append(gap)
        elif 0 < i < len(plotted) and segments[i - 1] is not None:
            segment = segments[i - 1]
            rows[j], status[j], bound[j] = segment.row_at(x), BOUNDED if segment.hidden else READ, segment.bound_px
    known = ~np.isnan(rows)
    if known.sum() >= 2:
        inner = ~known & (epochs > epochs[known].min()) & (epochs < epochs[known].max())
        rows[inner] = np.interp(epochs[inner], epochs[known], rows[known])
        status[inner] = INTERPOLATED
    return CurveReading("", segments, epochs, rows, status, bound, np.array(disagreement, dtype=float))


@dataclass
class FigureReading:
    spec: FigureSpec
    frame: AxesFrame
    x_cal: AxisCalibration
    y_cal: AxisCalibration
    legend: tuple[int, int, int, int] | None
    flat_run_px: float
    labels: np.ndarray = field(repr=False)
    curves: list[CurveReading] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        parts = []
        for curve in self.curves:
            parts.append(
                pd.DataFrame(
                    {
                        "figure": self.spec.name,
                        "optimizer": curve.optimizer,
                        "epoch": curve.epochs,
                        "value": self.y_cal.to_value(curve.rows_px),
                        "status": curve.status,
                        "bound": curve.bound_px / abs(self.y_cal.slope),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True).dropna(subset=["value"])

    def visible_rows_near(self, optimizer: str, epoch: float) -> np.ndarray:
        """Rows of the line's colour within half a line width of the epoch's column."""
        k = self.spec.optimizers.index(optimizer) + 1
        x = float(self.x_cal.to_px(epoch))
        half = int(np.ceil(self.flat_run_px / 2))
        return np.nonzero(self.labels[:, int(round(x)) - half : int(round(x)) + half + 1] == k)[0]


def digitize(
    path: Path, spec: FigureSpec, plotted: np.ndarray = PLOTTED_EPOCHS, epochs: np.ndarray = ALL_EPOCHS
) -> FigureReading:
    rgb = load_rgb(path)
    frame = find_axes_frame(rgb)
    x_cal = calibrate(find_x_ticks(rgb, frame), spec.x_ticks, "x")
    y_cal = calibrate(find_y_ticks(rgb, frame), spec.y_ticks, "y")
    legend = find_legend_box(rgb, frame)
    labels = classify_colours(rgb, [LINE_COLOURS[name] for name in spec.optimizers], frame, legend)
    neighbours = nearest_classified_rows(labels)
    runs = [colour_runs(labels, k + 1, neighbours) for k in range(len(spec.optimizers))]
    flat_run = flat_run_length(runs)
    reading = FigureReading(spec, frame, x_cal, y_cal, legend, flat_run, labels)
    columns = segment_columns(x_cal, plotted, margin_px=flat_run / 2 + 2)
    for name, curve_runs in zip(spec.optimizers, runs):
        curve = read_epochs([read_segment(curve_runs, cols, flat_run) for cols in columns], x_cal, plotted, epochs)
        curve.optimizer = name
        reading.curves.append(curve)
    return reading


# ---------------------------------------------------------------- check picture

STATUS_MARKERS = {READ: "o", BOUNDED: "s", INTERPOLATED: "x"}


def draw_points(ax, reading: FigureReading, size: float) -> None:
    for curve in reading.curves:
        x = reading.x_cal.to_px(curve.epochs)
        face = np.array(LINE_COLOURS[curve.optimizer]) / 255
        edge = "white" if curve.optimizer == "Adagrad" else "black"
        for status, marker in STATUS_MARKERS.items():
            at = curve.status == status
            if status == INTERPOLATED:
                ax.plot(x[at], curve.rows_px[at], marker, ms=1.4 * size, color="magenta", mew=1.2)
            else:
                ax.plot(x[at], curve.rows_px[at], marker, ms=size, mfc=face, mec=edge, mew=0.6)


def draw_calibration(ax, reading: FigureReading) -> None:
    bottom, left = reading.frame.bottom[1], reading.frame.left[0]
    ax.plot(reading.x_cal.tick_px, [bottom + 45] * len(reading.x_cal.tick_px), "^", color="magenta", ms=6)
    ax.plot([left - 45] * len(reading.y_cal.tick_px), reading.y_cal.tick_px, ">", color="magenta", ms=6)
    if reading.legend is not None:
        top, bot, lft, rgt = reading.legend
        ax.plot([lft, rgt, rgt, lft, lft], [top, top, bot, bot, top], "--", color="magenta", lw=1)


def draw_zoom(ax, rgb: np.ndarray, reading: FigureReading, zoom: tuple[float, float, float, float]) -> None:
    e0, e1, v0, v1 = zoom
    x0, x1 = (int(round(float(reading.x_cal.to_px(e)))) for e in (e0, e1))
    y0, y1 = sorted(int(round(float(reading.y_cal.to_px(v)))) for v in (v0, v1))
    ax.imshow(rgb[y0:y1, x0:x1], extent=(x0, x1, y1, y0), aspect="auto", interpolation="antialiased")
    draw_points(ax, reading, size=4)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"epochs {e0:g}-{e1:g}, values {v0:g}-{v1:g} (stretched)", fontsize=8)


def save_overlay(path: Path, reading: FigureReading, out: Path, width_px: int = 1600) -> None:
    """The figure downscaled to width_px with the digitised points, detected ticks and masked legend drawn on it,
    and below it enlarged crops of the crowded parts (spec.zooms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = load_rgb(path)
    height, width = rgb.shape[:2]
    main_h = width_px * height / width
    zoom_h = 560 if reading.spec.zooms else 0
    fig = plt.figure(figsize=(width_px / 100, (main_h + zoom_h) / 100), dpi=100)
    ax = fig.add_axes((0, zoom_h / (main_h + zoom_h), 1, main_h / (main_h + zoom_h)))
    small = Image.fromarray(rgb).resize((width_px, round(main_h)), Image.LANCZOS)
    ax.imshow(small, extent=(0, width, height, 0))
    ax.set_axis_off()
    draw_points(ax, reading, size=3.5)
    draw_calibration(ax, reading)
    ax.text(
        10,
        10,
        "digitised points: o read, square hidden (bounded by slivers), magenta x interpolated; "
        "magenta triangles: detected ticks; dashed: masked legend",
        fontsize=8,
        color="magenta",
        va="top",
    )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    n = len(reading.spec.zooms)
    for i, zoom in enumerate(reading.spec.zooms):
        panel = fig.add_axes((i / n + 0.01, 0.01, 1 / n - 0.02, (zoom_h - 30) / (main_h + zoom_h)))
        draw_zoom(panel, rgb, reading, zoom)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)  # keeps the file small


# ---------------------------------------------------------------- report


def to_units(px: float, cal: AxisCalibration) -> float:
    return px / abs(cal.slope)


TICK_SNAP_PX = 0.5  # matplotlib's renderer snaps tick marks to whole pixels, lines not: a possible calibration bias


def kink_offset_px(reading: FigureReading, min_turn: float = 0.5) -> tuple[float, int]:
    """Independent check of the x calibration: where two read segments meet at a clear kink, their intersection is
    the plotted point's true column. Returns the mean (kink column - calibrated column), weighted by the squared
    change of slope, and the number of kinks used."""
    offsets, weights = [], []
    for curve in reading.curves:
        for i, (left, right) in enumerate(zip(curve.segments[:-1], curve.segments[1:])):
            if left is None or right is None or left.hidden or right.hidden:
                continue
            turn = left.slope - right.slope
            if abs(turn) >= min_turn:
                kink = (right.intercept - left.intercept) / turn
                offsets.append(kink - float(reading.x_cal.to_px(PLOTTED_EPOCHS[i + 1])))
                weights.append(turn**2)
    return (float(np.average(offsets, weights=weights)), len(offsets)) if offsets else (np.nan, 0)


def reading_error(reading: FigureReading) -> dict[str, float]:
    """Conservative error in data units (half a line width plus the worst y calibration residual plus a possible
    tick-snapping bias), and the precision actually observed (agreement of the two segments at a plotted point,
    column scatter)."""
    y_cal = reading.y_cal
    half_width = to_units(reading.flat_run_px / 2, y_cal)
    calibration = to_units(np.abs(y_cal.residuals_px).max() + TICK_SNAP_PX, y_cal)
    joins = np.concatenate([c.join_disagreement_px for c in reading.curves])
    scatter = [s.rms_px for c in reading.curves for s in c.segments if s is not None and not s.hidden]
    return {
        "half_width": half_width,
        "calibration": calibration,
        "bound": half_width + calibration,
        "join_median": to_units(np.nanmedian(joins), y_cal),
        "join_p95": to_units(np.nanpercentile(joins, 95), y_cal),
        "join_max": to_units(np.nanmax(joins), y_cal),
        "scatter_median": to_units(float(np.median(scatter)), y_cal),
    }


def calibration_lines(reading: FigureReading) -> list[str]:
    lines = []
    for axis, cal in (("x", reading.x_cal), ("y", reading.y_cal)):
        res = cal.residuals_px
        lines.append(
            f"- {axis}: ticks {', '.join(f'{v:g}' for v in cal.tick_values)} found at px "
            f"{', '.join(f'{p:.1f}' for p in cal.tick_px)}; fit px = {cal.intercept:.2f} "
            f"{'+' if cal.slope > 0 else '-'} {abs(cal.slope):.3f} * value; residuals "
            f"{', '.join(f'{r:+.2f}' for r in res)} px (rms {np.sqrt(np.mean(res**2)):.2f} px, max "
            f"{np.abs(res).max():.2f} px = {to_units(np.abs(res).max(), cal):.5f} "
            f"{'epochs' if axis == 'x' else 'units'})"
        )
    return lines


def epoch_list(epochs: np.ndarray) -> str:
    """1,2,3,7,9,10 -> '1-3, 7, 9-10'."""
    groups = consecutive_groups(np.asarray(epochs))
    return ", ".join(f"{g[0]}" if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups) or "none"


def segment_names(segments: list[SegmentFit | None], keep) -> str:
    pairs = zip(PLOTTED_EPOCHS[:-1], PLOTTED_EPOCHS[1:])
    return ", ".join(f"{a}-{b}" for (a, b), s in zip(pairs, segments) if keep(s)) or "none"


def status_lines(reading: FigureReading) -> list[str]:
    lines = []
    for curve in reading.curves:
        bounded = curve.status == BOUNDED
        bound_units = to_units(curve.bound_px[bounded].max(), reading.y_cal) if bounded.any() else 0.0
        partly = segment_names(curve.segments, lambda s: s is not None and not s.hidden and s.n_edge > s.n_centre)
        line = (
            f"- {curve.optimizer}: {int((curve.status == READ).sum())} epochs read; "
            f"interpolated ({int(curve.interpolated.sum())}): {epoch_list(curve.epochs[curve.interpolated])}; "
            f"hidden, bounded by slivers ({int(bounded.sum())}): {epoch_list(curve.epochs[bounded])}"
            f"{f' (+/-{bound_units:.4f})' if bounded.any() else ''}; "
            f"partly covered segments, read mostly from the free edge: {partly}"
        )
        missing = curve.epochs[curve.status == MISSING]
        if len(missing):
            line += f"; **missing ({len(missing)}): {epoch_list(missing)}**"
            rows = reading.visible_rows_near(curve.optimizer, missing[0])
            if len(rows):
                values = reading.y_cal.to_value(rows)
                line += (
                    f" (line hidden under the others; near epoch {missing[0]} only {len(rows)} px of its colour "
                    f"show, at values {values.min():.3f}-{values.max():.3f})"
                )
        lines.append(line)
    return lines


def sample_table(table: pd.DataFrame, epochs=(1, 5, 10, 20, 30, 50, 99)) -> list[str]:
    wide = table[table.epoch.isin(epochs)].pivot(index="optimizer", columns="epoch", values="value")
    wide = wide.reindex(columns=list(epochs))
    lines = [
        "| optimizer | " + " | ".join(f"epoch {e}" for e in wide.columns) + " |",
        "|---|" + "---:|" * len(wide.columns),
    ]
    for name, row in wide.iterrows():
        lines.append(f"| {name} | " + " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in row) + " |")
    return lines


METHOD = f"""Method: the axes frame is the pair of longest dark rows and of longest dark columns; the tick marks are
detected in a {TICK_BAND_PX}-px band just outside the bottom and left spines (darkness-weighted centre of each mark)
and mapped to their printed values by a least-squares line; the legend box (its light-grey frame) is masked; every
pixel inside the axes is classified to the nearest line colour within RGB distance {COLOUR_TOLERANCE:g} (anti-aliased
blends stay unclassified). The authors plotted epochs 1, 3, ..., 99 and matplotlib joins them by straight segments,
so each segment is read on its own: in every pixel column inside it (half a line width + 2 px away from the joins)
the vertical run of the line's colour gives the centre (run ends on background or on a line drawn earlier, which
lies underneath) or, where a line drawn later covers one end, the free edge -/+ half the expected run length (line
width x sqrt(1 + slope^2)); a straight line is fitted per segment dropping readings more than {FIT_CUTOFF_PX:g} px
(perpendicular) off it. A plotted (odd) epoch is the mean of the two adjoining segments' ends, an even epoch is read
on its segment. A segment with fewer than {MIN_READABLE_FRACTION:.0%} readable columns is hidden under other lines:
if slivers of it show, every sliver must lie inside the line, which bounds its centre (reading = middle of that
interval, "hidden, bounded"); otherwise its epochs are interpolated linearly between the nearest readings.
The legend order is taken as the plotting order (checked at crossings: Adagrad over Adam over the gRDA lines over
SGD Nesterov over SGD)."""


def write_report(readings: list[FigureReading], table: pd.DataFrame, out: Path, command: str) -> None:
    text = [
        "# The authors' Keras-CNN CIFAR-10 curves, digitised",
        "",
        "Numbers read off the authors' two figures, `cifar_cnn_acc_test_multiopt.png` (test accuracy, 8 "
        "optimizers) and `cifar_cnn_nonzero_weights_multiopt.png` (nonzero weight ratio, 4 gRDA runs), both "
        "3861x2773 px, by `scripts/authors/digitize_authors_figure.py`:",
        "",
        f"    {command}",
        "",
        "Data: `authors_keras_cnn_curves.csv`, columns `figure,optimizer,epoch,value` (figure `test_acc` or "
        "`nonzero_ratio`; epoch = epochs completed), every integer epoch 1..99 where the line can be read. Odd "
        "epochs are the authors' plotted points; even epochs are read on the straight segment drawn between "
        "them (so they carry no information beyond the picture's linear join).",
        "Check pictures (the digitised points drawn on the figure, downscaled): "
        "`figures/authors_keras_cnn_digitized_acc.png`, `figures/authors_keras_cnn_digitized_nonzero.png`.",
        "The method is tested on a synthetic matplotlib figure in the same style with known curves "
        "(`tests/test_digitize.py`).",
        "",
        METHOD.replace("\n", " "),
        "",
    ]
    for reading in readings:
        err = reading_error(reading)
        kink, kinks = kink_offset_px(reading)
        steep = max(abs(seg.slope) for c in reading.curves for seg in c.segments if seg is not None)
        steep_error = to_units(0.5 * steep, reading.y_cal)
        text += [
            f"## {reading.spec.name}",
            "",
            "Calibration (tick marks found in the image, values as printed):",
            *calibration_lines(reading),
            "",
            f"Line width: {reading.flat_run_px:g} px (vertical run of a flat line) = "
            f"{to_units(reading.flat_run_px, reading.y_cal):.4f} units; 1 px = "
            f"{to_units(1, reading.y_cal):.5f} units. Legend box masked (top, bottom, left, right px): "
            f"{reading.legend}.",
            "",
            f"**Reading error: +/-{err['bound']:.4f} units** (conservative: half a line width "
            f"{err['half_width']:.4f} + calibration {err['calibration']:.5f}, i.e. the largest tick residual "
            f"plus {TICK_SNAP_PX:g} px for matplotlib snapping tick marks, but not lines, to whole pixels). The "
            f"precision actually observed is much finer: the two segments meeting at a plotted point agree to "
            f"{err['join_median']:.5f} units (median; 95th percentile {err['join_p95']:.5f}, max "
            f"{err['join_max']:.5f}), and the column centres scatter about their segment line by "
            f"{err['scatter_median']:.5f} units rms (median segment). Check of the x calibration: the kinks "
            f"where two segments meet ({kinks} of them) lie {kink:+.2f} px (weighted mean) from the calibrated "
            f"columns of their epochs; an x offset dx moves a reading by slope * dx, which matters only on "
            f"the steep first segments (e.g. 0.5 px there is up to ~{steep_error:.4f} units). Hidden, bounded "
            "points carry the larger +/- given below.",
            "",
            "Hidden and interpolated points:",
            *status_lines(reading),
            "",
        ]
    text += [
        "## Sample values",
        "",
        "Test accuracy:",
        "",
        *sample_table(table[table.figure == "test_acc"]),
        "",
        "Nonzero weight ratio:",
        "",
        *sample_table(table[table.figure == "nonzero_ratio"]),
        "",
    ]
    out.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path("../shared/reference"))
    parser.add_argument("--out", type=Path, default=REPO / "results")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="redraw the digitised points on the figures (results/figures/)",
    )
    args = parser.parse_args(argv)
    missing = [spec.filename for spec in FIGURES if not (args.reference / spec.filename).is_file()]
    if missing:
        print(
            f"error: {', '.join(missing)} not found in {args.reference}; pass --reference DIR, the folder that "
            "holds the authors' two PNGs",
            file=sys.stderr,
        )
        return 2
    readings = []
    for spec in FIGURES:
        path = args.reference / spec.filename
        reading = digitize(path, spec)
        readings.append(reading)
        if args.check:
            save_overlay(path, reading, args.out / "figures" / spec.overlay)
    table = pd.concat([r.table() for r in readings], ignore_index=True)
    table["value"] = table["value"].round(4)
    args.out.mkdir(parents=True, exist_ok=True)
    table[["figure", "optimizer", "epoch", "value"]].to_csv(args.out / "authors_keras_cnn_curves.csv", index=False)
    command = ".venv/bin/python scripts/authors/digitize_authors_figure.py"
    write_report(readings, table, args.out / "authors_keras_cnn_curves.md", command)
    print(f"wrote {len(table)} rows to {args.out / 'authors_keras_cnn_curves.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
