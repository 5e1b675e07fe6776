"""Leaderboard figures (matplotlib, Agg backend, PNG): the invariance-equivariance trade-off (top-1 against
rotation R^2, one labelled point per method) and one bar chart per metric.

Rows of the same method and setting (dataset, training dataset when another, image size, epochs) but
different seeds are averaged; bars show the spread of seeds as an error bar. A method's top-1 is that of
its invariant part when it has one (else of the full representation) and its rotation R^2 that of its
equivariant part (else of the full representation): the part built for each property.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.leaderboard.rows import METRIC_COLUMNS, PARTS, LeaderboardError, Row

TRADEOFF_NAME = "tradeoff.png"
#: Axis labels of metric columns with a unit or a direction worth saying.
UNITS = {"top1": "%", "top5": "%", "mean_class_acc": "%", "rot_angle_deg": "degrees"}
LOWER_IS_BETTER = ("rot_angle_deg", "pre", "emb_dist")


def plot_leaderboard(rows: list[Row], folder: str | Path) -> list[Path]:
    """Write tradeoff.png and METRIC.png for every metric with a value (e.g. top1.png with a bar per
    representation part); returns the files written. LeaderboardError naming the folder or file that
    cannot be written."""
    folder = plot_folder(folder)
    groups = group_rows(rows)
    written = []
    if any(_tradeoff_point(group) is not None for group in groups.values()):
        written.append(_save(tradeoff_figure(groups), folder / TRADEOFF_NAME))
    for metric, columns in metric_columns(rows).items():
        written.append(_save(metric_figure(groups, metric, columns), folder / f"{metric}.png"))
    return written


def plot_folder(folder: str | Path) -> Path:
    """The figures' folder, created when missing and checked writable; LeaderboardError otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LeaderboardError(
            f"{folder}: cannot make the figures' folder ({error.strerror or error}); choose another --plot"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LeaderboardError(f"{folder}: the figures' folder is not writable; choose another --plot")
    return folder


def metric_columns(rows: list[Row]) -> dict[str, list[str]]:
    """Metric -> its columns holding a value in some row: one per part ("top1": top1_inv, top1_equi,
    top1_full) or the metric itself ("mrr")."""
    metrics: dict[str, list[str]] = {}
    for column in METRIC_COLUMNS:
        if any(row.get(column) is not None for row in rows):
            metric, _, part = column.rpartition("_")
            metrics.setdefault(metric if part in PARTS else column, []).append(column)
    return metrics


def group_rows(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by label: the method and its settings and options other than the preset's, then preset,
    dataset (and the training dataset when another), image size and epochs when the rows span several.
    Only rows that differ in nothing but their seed share a label: a dataset name that stands for several
    datasets (another rendering, a subset without bad objects) gets the first digits of each one's hash."""
    setting = ("preset", "dataset", "dataset_hash", "train_dataset", "image_size", "epochs")
    settings = {tuple(row.get(column) for column in setting) for row in rows}
    hashes: dict[str, set] = {}
    for row in rows:
        hashes.setdefault(str(row.get("dataset")), set()).add(row.get("dataset_hash"))
    groups: dict[str, list[Row]] = {}
    for row in rows:
        label = str(row.get("method"))
        options = ";".join(row[key] for key in ("train_options", "method_options") if row.get(key))
        if options:
            label += f" [{options}]"
        if len(settings) > 1:
            dataset = str(row.get("dataset"))
            if len(hashes[dataset]) > 1:
                dataset += f" #{str(row.get('dataset_hash'))[:6]}"
            trained = f" (trained on {row['train_dataset']})" if row.get("train_dataset") else ""
            label += (
                f"\n{row.get('preset')} {dataset}{trained} {row.get('image_size')}px {row.get('epochs')}ep"
            )
        groups.setdefault(label, []).append(row)
    return groups


def one_line(label: str, most: int = 3 * 48) -> str:
    """A group's label on one line (the trade-off figure's key), elided with "..." beyond `most`
    characters."""
    line = label.replace("\n", " ")
    return line if len(line) <= most else line[: most - 3] + "..."


#: Characters of a label shown per line, and lines shown, in the figures (the rest is elided).
LABEL_WIDTH, LABEL_LINES = 48, 3


def shown_label(label: str) -> str:
    """A group's label as the figures show it: each line wrapped at LABEL_WIDTH characters (options
    break at their ";"), at most LABEL_LINES lines, the rest elided with "..."."""
    lines = []
    for line in label.split("\n"):
        while len(line) > LABEL_WIDTH:
            cut = line.rfind(";", 0, LABEL_WIDTH) + 1 or line.rfind(" ", 0, LABEL_WIDTH) + 1 or LABEL_WIDTH
            lines.append(line[:cut].rstrip())
            line = line[cut:].lstrip()
        lines.append(line)
    if len(lines) > LABEL_LINES:
        lines = [*lines[: LABEL_LINES - 1], lines[LABEL_LINES - 1][: LABEL_WIDTH - 3] + "..."]
    return "\n".join(lines)


def tradeoff_figure(groups: dict[str, list[Row]]) -> Figure:
    """Top-1 (%) against rotation R^2, one point per group (in the order of `groups`), labelled beside
    the point; when some labels would overlap or leave the figure (many long or two-line labels), the
    points are numbered instead and a key beside the axes gives each number's label."""
    points = {label: point for label, rows in groups.items() if (point := _tradeoff_point(rows)) is not None}
    for numbered in (False, True):
        figure, axes = _figure(6.4, 4.8)
        for number, (label, point) in enumerate(points.items(), start=1):
            axes.scatter(*point, s=40, label=f"{number}  {one_line(label)}")
        axes.set_xlabel("rotation R$^2$ (equivariant part, else full)")
        axes.set_ylabel("top-1 accuracy, % (invariant part, else full)")
        axes.set_title("Invariance-equivariance trade-off")
        axes.grid(alpha=0.3)
        shown = {shown_label(label): point for label, point in points.items()}
        if not numbered and len(shown) == len(points) and place_labels(axes, shown, strict=True) is not None:
            return figure
    names = {str(number): point for number, point in enumerate(points.values(), start=1)}
    place_labels(axes, names)
    figure.legend(loc="outside right upper", fontsize=7, frameon=False, handletextpad=0.2)
    longest = max((len(one_line(label)) for label in points), default=0)
    figure.set_size_inches(6.4 + 0.055 * longest, 4.8)
    return figure


#: Where a point's label may go, in points from the point, in order of preference.
LABEL_OFFSETS = ((5, 4), (5, -11), (-5, 4), (-5, -11), (5, 14), (-5, 14), (5, -21), (-5, -21))


def place_labels(axes, points: dict[str, tuple[float, float]], strict: bool = False) -> list | None:
    """Annotate each point with its label at the first of `LABEL_OFFSETS` where the label overlaps no
    label placed before it and stays inside the axes (else at the first offset); returns the
    annotations. strict: return None instead (and leave no annotation) when some label has no such place."""
    figure = axes.get_figure()
    figure.canvas.draw()  # fixes the layout, hence where the points are on the canvas
    renderer = figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)

    def annotate(label: str, point: tuple[float, float], offset: tuple[int, int]):
        annotation = axes.annotate(
            label,
            point,
            textcoords="offset points",
            xytext=offset,
            fontsize=8,
            horizontalalignment="left" if offset[0] > 0 else "right",
        )
        return annotation, annotation.get_window_extent(renderer)

    def fits(box) -> bool:
        within = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
        return within and not any(box.overlaps(other) for other in placed)

    placed, annotations = [], []
    for label, point in points.items():
        for offset in LABEL_OFFSETS:
            annotation, box = annotate(label, point, offset)
            if fits(box):
                break
            annotation.remove()
        else:
            if strict:
                for annotation in annotations:
                    annotation.remove()
                return None
            annotation, box = annotate(label, point, LABEL_OFFSETS[0])
        placed.append(box)
        annotations.append(annotation)
    return annotations


def metric_figure(groups: dict[str, list[Row]], metric: str, columns: list[str]) -> Figure:
    """Bars per group and column (mean over seeds, error bar: standard deviation over seeds); one bar
    container per column, labelled with its part ("inv", "equi", "full") when the metric has parts."""
    labels = list(groups)
    figure, axes = _figure(max(4.5, 0.5 * len(labels) * len(columns) + 2.5), 4.0)
    width = 0.8 / len(columns)
    positions = np.arange(len(labels))
    for offset, column in enumerate(columns):
        values = [[row[column] for row in rows if row.get(column) is not None] for rows in groups.values()]
        means = [float(np.mean(v)) if v else np.nan for v in values]
        spreads = [float(np.std(v)) if len(v) > 1 else 0.0 for v in values]
        part = column.removeprefix(metric).lstrip("_") or None
        axes.bar(
            positions + (offset - (len(columns) - 1) / 2) * width,
            means,
            width,
            yerr=spreads,
            capsize=3,
            label=part,
        )
    axes.set_xticks(positions, [shown_label(label) for label in labels], rotation=30, ha="right", fontsize=8)
    unit = UNITS.get(metric)
    direction = " (lower is better)" if metric in LOWER_IS_BETTER else ""
    axes.set_ylabel(f"{metric}{f' ({unit})' if unit else ''}{direction}")
    axes.set_title(metric if len(columns) == 1 else f"{metric} per representation part")
    if len(columns) > 1:
        axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _tradeoff_point(rows: list[Row]) -> tuple[float, float] | None:
    top1 = _mean_first(rows, ("top1_inv", "top1_full"))
    r2 = _mean_first(rows, ("rot_r2_equi", "rot_r2_full"))
    return None if top1 is None or r2 is None else (r2, top1)


def _mean_first(rows: list[Row], columns: tuple[str, ...]) -> float | None:
    """Mean over rows of the first column of `columns` that has values."""
    for column in columns:
        values = [row[column] for row in rows if row.get(column) is not None]
        if values:
            return float(np.mean(values))
    return None


def _figure(width: float, height: float):
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _save(figure: Figure, path: Path) -> Path:
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise LeaderboardError(f"{path}: cannot write the figure ({error.strerror or error})") from None
    return path
