"""Leaderboard rows: one row per (method, method options other than the preset's, preset, dataset, training
dataset when another, image size, epochs, seed), every metric of `3die evaluate` and where the numbers came
from. The schema is `COLUMNS`
(documented in docs/leaderboard.md); rows are plain dicts with a value of the column's type or None.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmark.evaluate.run import PROBE_TASKS, RESULTS_FORMAT, RESULTS_NAME, results_problem, upgrade_results
from render import spec
from render.files import write_text_atomically
from render.locks import exclusive_lock
from render.writer import link_target

#: Representation parts, in column order.
PARTS = ("inv", "equi", "full")
#: Per-part metrics: column prefix -> (task, metric in results.json, factor applied for the CSV).
PART_METRICS = {
    "top1": ("classification", "top1", 100.0),
    "top5": ("classification", "top5", 100.0),
    "mean_class_acc": ("classification", "mean_class_acc", 100.0),
    "rot_r2": ("rotation", "r2", 1.0),
    "rot_r2_comp": ("rotation", "r2_components", 1.0),
    "rot_angle_deg": ("rotation", "angle_deg", 1.0),
    "colour_r2": ("colour", "r2", 1.0),
    "colour_r2_floor": ("colour", "r2_floor", 1.0),
    "colour_r2_spot": ("colour", "r2_spot", 1.0),
}
RETRIEVAL_METRICS = ("pre", "emb_dist", "mrr", "hit1", "hit2", "hit5", "hit10")
#: Columns renamed since: a CSV of the schema before the rename (none of `NEWER_THAN_RENAMES` in its
#: header) is read with the new names (`pre` was the embedding distance before the published PRE was
#: computed). A current CSV that leaves some columns out keeps its names.
RENAMED_COLUMNS = {"pre": "emb_dist"}
NEWER_THAN_RENAMES = ("emb_dist", "method_options", "train_options")
IDENTITY_COLUMNS = {
    "method": str,
    "method_options": str,
    "train_options": str,
    "preset": str,
    "dataset": str,
    "dataset_hash": str,
    "train_dataset": str,
    "image_size": int,
    "epochs": int,
    "seed": int,
}
METRIC_COLUMNS = {
    **{f"{prefix}_{part}": float for prefix in PART_METRICS for part in PARTS},
    **dict.fromkeys(RETRIEVAL_METRICS, float),
}


def _count_or_per_task(text: str) -> int | str:
    """A `probe_samples` cell: one count, or counts per task ("classification=50;rotation=1")."""
    return int(text) if spec.is_decimal(text) else text


def _iso_time(text: str) -> str:
    """An `evaluated_at` cell: an ISO 8601 time (rows are merged by it), kept as written."""
    datetime.datetime.fromisoformat(text)
    return text


def _moment(text: str | None) -> datetime.datetime:
    """The instant of an `evaluated_at` value, for ordering: a time without a zone is UTC (3die writes
    UTC), a missing or unreadable one is before every other."""
    try:
        moment = datetime.datetime.fromisoformat(text) if text else None
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


_iso_time.__name__ = "an ISO 8601 time"

PROVENANCE_COLUMNS = {
    "probe_epochs": str,
    "probe_samples": _count_or_per_task,
    "train_time_s": float,
    "hardware": str,
    "eval_hardware": str,
    "code_version": str,
    "run": str,
    "evaluated_at": _iso_time,
}
#: Every column, in CSV order, with its type.
COLUMNS: dict[str, Callable[[str], Any]] = {**IDENTITY_COLUMNS, **METRIC_COLUMNS, **PROVENANCE_COLUMNS}
#: Rows with equal values here describe the same experiment; the newest evaluation wins. A dataset is its
#: hash: the same objects evaluated as a folder and as a packed file of another name are one dataset.
KEY_COLUMNS = (
    "method", "method_options", "train_options", "preset", "dataset_hash", "train_dataset", "image_size",
    "epochs", "seed",
)  # fmt: skip
#: Columns `format_table` shows when any row has a value.
SUMMARY_COLUMNS = (
    "method", "method_options", "train_options", "dataset", "train_dataset", "image_size", "epochs", "seed",
    "top1_inv", "top1_equi", "top1_full", "rot_r2_inv", "rot_r2_equi", "rot_r2_full",
    "colour_r2_equi", "colour_r2_full", "pre", "emb_dist", "mrr", "hit1", "hit5",
)  # fmt: skip

#: The lock file of NAME.csv is .NAME.csv.lock beside it.
LOCK_SUFFIX = ".lock"

Row = dict[str, Any]


class LeaderboardError(Exception):
    """An input that cannot become leaderboard rows; the message names the file and what to do."""


def row_from_results(results: dict[str, Any]) -> Row:
    """The leaderboard row of one run's results.json (accuracies in percent, the rest as computed)."""
    training, dataset, evaluation = results["training"], results["dataset"], results["evaluation"]
    if not isinstance(results["method"], str) or not results["method"]:
        raise KeyError("method")
    metrics = results.get("metrics", {})
    row: Row = dict.fromkeys(COLUMNS)
    row.update(
        method=results["method"],
        method_options=changed_options(
            results["method"], training.get("preset"), training.get("method_options")
        ),
        train_options=changed_settings(training),
        preset=training.get("preset"),
        dataset=dataset["name"],
        dataset_hash=dataset["hash"],
        train_dataset=other_training_dataset(training, dataset),
        image_size=training["image_size"],
        epochs=training["epochs_done"],
        seed=training["seed"],
    )
    for prefix, (task, name, factor) in PART_METRICS.items():
        for part, values in metrics.get(task, {}).items():
            if part in PARTS and values.get(name) is not None:
                row[f"{prefix}_{part}"] = float(values[name]) * factor
    for name in RETRIEVAL_METRICS:
        value = metrics.get("retrieval", {}).get(name)
        row[name] = None if value is None else float(value)
    skipped = results.get("skipped", {})  # e.g. classification of one class: no probe was trained
    settings = {task: value for task, value in results.get("settings", {}).items() if task not in skipped}
    epochs = [f"{task}={settings[task]['epochs']}" for task in PROBE_TASKS if task in settings]
    row.update(
        probe_epochs=";".join(epochs) or None,
        probe_samples=probe_samples(settings),
        train_time_s=training.get("seconds"),
        hardware=training.get("hardware"),
        eval_hardware=evaluation.get("hardware"),
        code_version=evaluation.get("code_version"),
        run=results.get("run"),
        evaluated_at=evaluation.get("evaluated_at"),
    )
    return row


def changed_options(method: str, preset: str | None, options: dict[str, Any] | None) -> str | None:
    """The method options of a run that differ from its preset's, as "KEY=VALUE;..." sorted by key (None
    when there are none, or for results that do not record them): what sets the experiment apart from the
    preset's run of the same method."""
    from benchmark.train.config import options_beyond_preset

    return _key_values(options_beyond_preset(method, preset, options))


def changed_settings(training: dict[str, Any]) -> str | None:
    """The training settings of a run (width, batch size, lr, weight decay) that differ from its preset's, as
    "KEY=VALUE;..." sorted by key; None when there are none, or for results that do not record them."""
    from benchmark.train.config import settings_beyond_preset

    return _key_values(settings_beyond_preset(training.get("preset"), training))


def _key_values(values: dict[str, Any]) -> str | None:
    """The values as KEY=VALUE joined by ";" in key order; None for no values."""
    return ";".join(f"{key}={values[key]}" for key in sorted(values)) or None


def probe_samples(settings: dict[str, Any]) -> int | str | None:
    """Views or pairs per training object and probe epoch: one number when every probe task drew the same,
    else per task like `probe_epochs` ("classification=50;rotation=1"); None without probes."""
    samples = {task: settings[task].get("samples_per_object", 1) for task in PROBE_TASKS if task in settings}
    if len(set(samples.values())) > 1:
        return ";".join(f"{task}={count}" for task, count in samples.items())
    return next(iter(samples.values()), None)


def other_training_dataset(training: dict[str, Any], dataset: dict[str, Any]) -> str | None:
    """The name of the dataset a run trained on when it was evaluated on another one (e.g. an OOD split),
    else None (also for results that do not record it).

    A run evaluated on the objects it trained on, rendered with the same settings, as a folder or as a
    packed file of any name, was evaluated on its own dataset: the fingerprints of the training objects
    and the rendering settings are equal (settings that either side did not record do not count)."""
    trained = training.get("dataset") or {}
    fingerprint = trained.get("fingerprint")
    rendered = trained.get("rendering"), dataset.get("rendering")
    same_rendering = None in rendered or rendered[0] == rendered[1]
    if fingerprint is not None and fingerprint == dataset.get("train_fingerprint") and same_rendering:
        return None
    name = trained.get("name")
    return name if name is not None and name != dataset["name"] else None


def merge_rows(rows: Iterable[Row], echo: Callable[[str], None] | None = None) -> list[Row]:
    """One row per experiment (`KEY_COLUMNS`): the one evaluated last wins (`evaluated_at`, ISO time;
    among equal times, the later in `rows`). Sorted by dataset, image size, epochs, method and seed.

    When the dropped row came from another run folder than the kept one (two runs with the same key, e.g.
    trained alike on a dataset folder and on its packed file), `echo` gets one line naming both.
    """
    newest: dict[tuple, Row] = {}
    for row in rows:
        key = tuple(row.get(column) for column in KEY_COLUMNS)
        kept = newest.get(key)
        if kept is None:
            newest[key] = row
            continue
        moment, kept_moment = _moment(row.get("evaluated_at")), _moment(kept.get("evaluated_at"))
        newer = moment >= kept_moment
        if echo is not None and kept.get("run") != row.get("run"):
            old, new = (kept, row) if newer else (row, kept)
            echo(
                f"{new.get('run')} and {old.get('run')} are one experiment for the leaderboard (same "
                f"{', '.join(KEY_COLUMNS)}): keeping the newer evaluation, of {new.get('run')}; give the "
                "other another --seed or a leaderboard of its own to keep both"
            )
        elif (
            echo is not None
            and moment == kept_moment
            and (differing := [c for c in METRIC_COLUMNS if kept.get(c) != row.get(c)])
        ):
            echo(
                f"{row.get('run')}: two rows of one experiment, evaluated at the same time, with other "
                f"numbers ({', '.join(differing[:3])}); keeping the one given last"
            )
        if newer:
            newest[key] = row
    return sorted(newest.values(), key=_sort_key)


def append_row(csv_path: str | Path, row: Row, echo: Callable[[str], None] | None = None) -> list[Row]:
    """Add one row to a leaderboard CSV (created when missing), replacing an older row of the same
    experiment (said through `echo` when it came from another run folder); returns the rows written."""
    return append_rows(csv_path, [row], echo)


def append_rows(
    csv_path: str | Path, rows: Iterable[Row], echo: Callable[[str], None] | None = None
) -> list[Row]:
    """Merge rows into a leaderboard CSV (created when missing; its rows come first, so among equal times
    a given row wins) and write it; returns the rows written.

    The CSV is read, merged and written under its lock (.NAME.csv.lock beside it), so processes adding rows
    to one leaderboard at once (several `3die benchmark` runs) take turns and none loses another's row;
    `echo` hears once when this one waits. LeaderboardError when the CSV is unreadable or its folder
    unwritable. A CSV given through a symbolic link is written (and locked) where the link points."""
    path = Path(csv_path)

    def waiting(holder: str) -> None:
        if echo is not None:
            echo(f"{path}: waiting for another process writing this leaderboard ({holder or lock})")

    try:
        path = link_target(path)
        lock = path.with_name(f".{path.name}{LOCK_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(lock, on_wait=waiting):
            merged = merge_rows([*(read_rows(path) if path.exists() else []), *rows], echo)
            write_rows(path, merged)
    except (OSError, RuntimeError) as error:  # RuntimeError: a symbolic link that loops
        raise LeaderboardError(
            f"{path}: cannot write the leaderboard ({_said(error)}); choose a writable place"
        ) from None
    return merged


def _said(error: Exception) -> str:
    return (error.strerror if isinstance(error, OSError) else None) or str(error)


def check_writable(csv_path: str | Path) -> None:
    """LeaderboardError unless the leaderboard CSV can be written (its folder made, writable): checked by
    `3die benchmark` before it trains, not after."""
    path = Path(csv_path)
    try:
        target = link_target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        unusable = target.is_dir() or not os.access(target.parent, os.W_OK | os.X_OK)
    except (OSError, RuntimeError) as error:  # a name too long, a symbolic link that loops
        raise LeaderboardError(
            f"{path}: cannot write the leaderboard here ({_said(error)}); choose another --leaderboard"
        ) from None
    if unusable:
        raise LeaderboardError(f"{path}: cannot write the leaderboard here; choose another --leaderboard")


def load_rows(source: str | Path) -> list[Row]:
    """Rows from a leaderboard CSV, a run folder (its results.json) or a results.json file."""
    path = Path(source)
    if path.is_dir():
        if not (path / "checkpoints").is_dir() and not (path / RESULTS_NAME).is_file():  # not a run
            raise LeaderboardError(
                f"{path}: not a run folder (no checkpoints/ or {RESULTS_NAME}); give runs that `3die train` "
                "wrote and `3die evaluate` scored, their results.json files or leaderboard CSVs"
            )
        path = path / RESULTS_NAME
        if not path.is_file():
            raise LeaderboardError(f"{path}: missing; evaluate the run first (`3die evaluate {source}`)")
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such run folder, results.json or CSV file")
    if path.suffix.lower() == ".csv":
        return read_rows(path)
    results = read_results_file(path)
    try:
        row = row_from_results(results)
    except (KeyError, TypeError, AttributeError) as error:
        raise LeaderboardError(
            f"{path}: incomplete results (no {error}); evaluate the run again (`3die evaluate`)"
        ) from None
    except ValueError as error:  # a score that is no number
        raise LeaderboardError(f"{path}: {error}; evaluate the run again (`3die evaluate`)") from None
    problem = row_problem(row)
    if problem is not None:
        skipped = "; ".join(f"{task} skipped: {why}" for task, why in results.get("skipped", {}).items())
        raise LeaderboardError(
            f"{path}: {problem}{f' ({skipped})' if skipped else ''}; evaluate the tasks that score it "
            "first (`3die evaluate`)"
        )
    # each cell as a leaderboard CSV would give it back: a value of another type is refused here, not
    # written into a CSV that the next merge could not read
    try:
        return [{column: _parse(path, None, column, _cell(value)) for column, value in row.items()}]
    except LeaderboardError as error:
        raise LeaderboardError(f"{error}; evaluate the run again (`3die evaluate`)") from None


def row_problem(row: Row) -> str | None:
    """Why a row cannot be on a leaderboard (what `read_rows` would refuse it for), or None: no method,
    no metric, a metric that is not a finite number, or a negative count."""
    if not row.get("method"):
        return "a row without a method"
    metrics = [row[column] for column in METRIC_COLUMNS if row.get(column) is not None]
    if not metrics:
        return "no metric to put on a leaderboard"
    bad = [
        column for column in METRIC_COLUMNS if row.get(column) is not None and not math.isfinite(row[column])
    ]
    if bad:
        return f"{bad[0]} is {row[bad[0]]}, not a finite number"
    negative = [
        c for c, kind in COLUMNS.items() if kind is int and isinstance(row.get(c), int) and row[c] < 0
    ]
    if negative:
        return f"{negative[0]} is {row[negative[0]]}, expected 0 or more"
    return None


def read_results_file(path: Path) -> dict[str, Any]:
    """A results.json written by `3die evaluate`; LeaderboardError naming the file otherwise."""
    try:
        results = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError) as error:
        raise LeaderboardError(
            f"{path}: not a results.json of `3die evaluate` nor a leaderboard .csv ({error}); give run "
            "folders, their results.json files or leaderboard CSVs"
        ) from None
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise LeaderboardError(f"{path}: not a results file of `3die evaluate` (format {RESULTS_FORMAT})")
    problem = results_problem(results)
    if problem is not None:
        raise LeaderboardError(f"{path}: {problem}; evaluate the run again (`3die evaluate`)")
    return upgrade_results(results)


# --- CSV ---------------------------------------------------------------------------------------------
def write_rows(path: str | Path, rows: Iterable[Row]) -> None:
    """Write rows as CSV with every column of `COLUMNS` (None as an empty cell), atomically."""
    path = link_target(Path(path))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _cell(row.get(column)) for column in COLUMNS})
    write_text_atomically(path, buffer.getvalue())


def read_rows(path: str | Path) -> list[Row]:
    """Rows of a leaderboard CSV with their column types; columns missing from the file are None, an empty
    file has no rows, and a column of an earlier 3die is read under its new name (`RENAMED_COLUMNS`).
    LeaderboardError for unknown columns or cells that do not parse."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise LeaderboardError(f"{path}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise LeaderboardError(f"{path}: not a text file; not a leaderboard CSV") from None
    if not text.strip():  # an empty file is an empty leaderboard
        return []
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
        records = list(reader)
    except csv.Error as error:
        raise LeaderboardError(f"{path}: not a readable CSV ({error})") from None
    unknown = [column for column in header if column not in COLUMNS]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if unknown or repeated or "method" not in header:
        problem = (
            f"unknown columns {', '.join(unknown)}"
            if unknown
            else f"columns {', '.join(repeated)} more than once"
            if repeated
            else "no method column"
        )
        raise LeaderboardError(f"{path}: {problem}; not a leaderboard CSV of this version of 3die")
    before_renames = not any(column in header for column in NEWER_THAN_RENAMES)
    renamed = RENAMED_COLUMNS if before_renames else {}
    rows = []
    for line, record in enumerate(records, start=2):
        if None in record:  # csv.DictReader's key for the cells beyond the header's
            raise LeaderboardError(f"{path}:{line}: more cells than the header has columns")
        if None in record.values():  # csv.DictReader's value for the columns a short line lacks
            short = sum(value is None for value in record.values())
            raise LeaderboardError(f"{path}:{line}: {short} cells fewer than the header has columns")
        record = {renamed.get(column, column): text for column, text in record.items()}
        row = {column: _parse(path, line, column, record.get(column)) for column in COLUMNS}
        if not row["method"] or not any(row[column] is not None for column in METRIC_COLUMNS):
            raise LeaderboardError(
                f"{path}:{line}: a row without a method or without any metric; not a leaderboard row"
            )
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _parse(path: Path, line: int | None, column: str, text: str | None) -> Any:
    """The value of a cell of `column` (`line` of the CSV `path`; None: a results.json's row)."""
    if text is None or text == "":
        return None
    kind, where = COLUMNS[column], f"{path}:{line}" if line is not None else str(path)
    if kind is int and not spec.is_decimal(text):  # int() would take "6_4", " 64" or other scripts' digits
        raise LeaderboardError(f"{where}: column {column} holds {text!r}, expected a whole number 0 or more")
    try:
        value = kind(text)
    except ValueError:
        raise LeaderboardError(
            f"{where}: column {column} holds {text!r}, expected {COLUMNS[column].__name__}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise LeaderboardError(f"{where}: column {column} holds {text!r}, expected a finite number")
    if isinstance(value, int) and value < 0:
        raise LeaderboardError(f"{where}: column {column} holds {text!r}, expected 0 or more")
    return value


# --- display -----------------------------------------------------------------------------------------
def format_table(rows: list[Row], columns: Iterable[str] = SUMMARY_COLUMNS) -> str:
    """A fixed-width text table of `rows` with those of `columns` that hold a value in some row."""
    if not rows:
        return "(no rows)"
    shown = [column for column in columns if any(row.get(column) is not None for row in rows)]
    cells = [shown] + [[_display(row.get(column), column) for column in shown] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(shown))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


#: Columns shown with two decimals in tables (percentages, degrees, seconds); other numbers get three.
TWO_DECIMALS = ("top1", "top5", "mean_class_acc", "rot_angle_deg", "train_time_s")


def _display(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if column.startswith(TWO_DECIMALS) else f"{value:.3f}"
    return str(value)


def _sort_key(row: Row) -> tuple:
    """Dataset, image size, epochs, method, seed (missing values last), then the other key columns (a
    total order, so that the file does not depend on the order rows were given in), where a missing
    value comes first: the preset's run before those with other options."""
    first = ("dataset", "image_size", "epochs", "method", "seed")
    rest = [column for column in KEY_COLUMNS if column not in first]
    return (
        *((row.get(column) is None, row.get(column) or 0) for column in first),
        *((row.get(column) is not None, str(row.get(column) or "")) for column in rest),
    )
