"""benchmarks/data_loading.py: one tiny end-to-end run on a synthetic dataset (8 px, one batch per reader)."""

import subprocess
import sys
from pathlib import Path

from render import spec

sys.path.insert(0, str(spec.REPO_ROOT / "tests" / "benchmark"))

from synthetic_data import write_dataset

SCRIPT = spec.REPO_ROOT / "benchmarks" / "data_loading.py"
READERS = (
    "folder (file by file)",
    "packed JPEGs as rendered",
    "packed JPEGs pre-resized",
    "packed raw pre-resized",
)


def test_every_reader_is_measured_and_a_missing_scratch_folder_is_created(tmp_path: Path):
    dataset = write_dataset(tmp_path / "data", classes=2, train_per_class=2, views=2, size=16)
    scratch = tmp_path / "not" / "yet"
    arguments = ["--image-size", "8", "--workers", "0", "--batch-size", "2", "--batches", "1"]
    arguments += ["--rounds", "1"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(dataset.root), "--scratch", str(scratch), *arguments],
        capture_output=True,
        text=True,
        cwd=spec.REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    summary = f"{dataset.root}: 4 objects x 2 views of 16 px"
    assert any(line.startswith(summary) for line in lines), result.stdout
    for reader in READERS:
        assert any(line.startswith(reader) and "samples/s" in line for line in lines), reader
    assert lines[-1].startswith("ratio packed/folder: ")
    assert scratch.is_dir() and not any(scratch.iterdir())  # the packed files lived in a temporary folder
