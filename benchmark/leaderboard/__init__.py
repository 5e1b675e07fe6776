"""Leaderboards (`3die leaderboard`): result rows from evaluated runs, a CSV schema (docs/leaderboard.md),
merging with deduplication, a text table and matplotlib figures.

`row_from_results(results)` turns a run's results.json into a row; `append_row(csv_path, row)` adds it to
a leaderboard CSV (replacing an older row of the same experiment; `append_rows` several, under the CSV's
lock, so concurrent writers lose no row); `plot_leaderboard(rows, folder)` draws.
"""

from benchmark.leaderboard.plots import TRADEOFF_NAME, plot_leaderboard
from benchmark.leaderboard.rows import (
    COLUMNS,
    KEY_COLUMNS,
    LeaderboardError,
    Row,
    append_row,
    append_rows,
    format_table,
    load_rows,
    merge_rows,
    read_rows,
    row_from_results,
    write_rows,
)

__all__ = [
    "COLUMNS",
    "KEY_COLUMNS",
    "TRADEOFF_NAME",
    "LeaderboardError",
    "Row",
    "append_row",
    "append_rows",
    "format_table",
    "load_rows",
    "merge_rows",
    "plot_leaderboard",
    "read_rows",
    "row_from_results",
    "write_rows",
]
