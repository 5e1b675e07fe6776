"""benchmarks/render_speed.py: its measures, and one tiny end-to-end run (16 px, 4-sample reference)."""

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from render import spec
from render.quality import quality_preset

SCRIPT = spec.REPO_ROOT / "benchmarks" / "render_speed.py"


def load_script():
    module_spec = importlib.util.spec_from_file_location("render_speed", SCRIPT)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["render_speed"] = module  # dataclasses look their module up there
    module_spec.loader.exec_module(module)
    return module


def test_psnr_and_rotation():
    bench = load_script()
    reference = np.full((4, 4, 3), 100, dtype=np.uint8)
    image = reference.copy()
    assert bench.psnr(image, reference) == math.inf
    image[0, 0, 0] = 110  # squared error 100 on one of 48 values
    assert bench.psnr(image, reference) == pytest.approx(10 * math.log10(255**2 * 48 / 100))
    assert bench.rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert bench.rotated(["a", "b", "c"], 4) == ["b", "c", "a"]


def test_one_sample_is_the_default_preset_without_its_samples_and_denoiser():
    bench = load_script()
    measured, reference = bench.configurations(64, ["published-raw", "1-sample"])
    default = quality_preset("default")
    assert [m.name for m in measured] == ["published-raw", "1-sample"]
    assert measured[0].quality == quality_preset("published-raw")
    assert measured[1].quality == replace(default, samples=1, denoise=False)
    assert (reference.quality.samples, reference.quality.denoise, reference.seed) == (64, False, 1)
    assert reference.quality.adaptive_threshold == 0.0 and reference.seed != measured[0].seed


def test_summary_splits_each_image_into_set_up_render_and_the_rest():
    bench = load_script()
    records = [
        {"seconds": 3.0, "setup_seconds": 0.6, "cpu_seconds": 5.0, "render_seconds": [1.0, 1.2],
         "psnr": [40.0, 42.0], "psnr_jpeg": [39.0, 41.0]},
        {"seconds": 1.0, "setup_seconds": 0.2, "cpu_seconds": 1.0, "render_seconds": [0.3, 0.3],
         "psnr": [44.0, 46.0], "psnr_jpeg": [43.0, 45.0]},
    ]  # fmt: skip
    row = bench.summarise(records, views=2)
    assert row["images"] == 4 and row["seconds_per_image"] == pytest.approx(1.0)
    assert row["object_setup_seconds_per_image"] == pytest.approx(0.2)
    assert row["render_call_seconds_per_image"] == pytest.approx(0.7)
    assert row["view_overhead_seconds_per_image"] == pytest.approx(0.1)
    assert (row["psnr"], row["psnr_min"], row["psnr_jpeg"]) == (43.0, 40.0, 42.0)


@pytest.mark.slow
def test_tiny_run_measures_every_configuration_and_caches_the_reference(tmp_path):
    command = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--objects", "1", "--views", "2"]
    command += ["--size", "16", "--reference-samples", "4"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "rendering 1 reference objects at 4 samples" in first.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["configurations"]
    assert list(rows) == ["published-raw", "published", "default", "1-sample"]
    for name, row in rows.items():
        assert row["images"] == 2 and row["seconds_per_image"] > 0, name
        assert math.isfinite(row["psnr"]) and row["psnr"] > 10, name
    assert results["qualities"]["published-raw"]["samples"] == spec.PUBLISHED_SAMPLES
    assert results["machine"]["bpy"] == "5.0.1" and results["machine"]["cores"] >= 1
    references = sorted(Path(tmp_path, "reference").rglob("view_*.png"))
    assert len(references) == 2
    assert len(list(Path(tmp_path, "default").rglob("image_*.jpg"))) == 2  # written by the real writer

    second = subprocess.run([*command, "--only", "1-sample"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reference objects" not in second.stdout  # the cached reference is reused
    assert list(json.loads((tmp_path / "results.json").read_text())["configurations"]) == ["1-sample"]
