"""Rendering speed: seconds per image and PSNR of the quality presets, side by side, on this machine.

    .venv/bin/python benchmarks/render_speed.py                 # the full run (about 15-25 min on 2 cores)
    .venv/bin/python benchmarks/render_speed.py --objects 1 --views 1 --reference-samples 16   # smoke run

Renders the same procedural objects (one per class of --classes) and the same latents with each measured
configuration: `published-raw` (100 samples, no denoiser: the baseline of the speed target), `published`
(BlenderProc's defaults as the published generator ran them), `default`, and `1-sample` (the default
preset's scene at 1 sample, no denoiser: the time a view costs outside the path tracer plus one sample).
Each configuration has its own worker process with one Blender scene, built and warmed up (one untimed
view) before timing, and renders through `render.launch.render_object`, the code `3die render` runs:
latent application, render, JPEG encoding and atomic file writes. Objects are taken in turn: for each
object every configuration renders all its views before the next object starts, in an order that rotates
from object to object, so that load from other processes affects all configurations alike.

Image quality is the PSNR of the rendered pixels (before JPEG encoding, tapped from `Scene.render`) and
of the written JPEGs against a reference rendered with --reference-samples (default 1024) samples, no
adaptive sampling, no denoiser, `published` light paths and another Cycles seed. References are kept in
OUT/reference/ and reused by later runs with the same size, samples and views.

Prints a Markdown table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.provenance import cpu_model
from render import launch, spec, writer
from render.quality import Quality, quality_preset
from render.sources import ObjectSpec, ProceduralSource

DEFAULT_CLASSES = ("airplane", "car", "chair", "lamp")
BASELINE = "published-raw"
ONE_SAMPLE = "1-sample"
MEASURED = (BASELINE, "published", "default", ONE_SAMPLE)
REFERENCE_SEED = 1  # the reference's Cycles seed differs from the measured renders' (0)


@dataclass(frozen=True)
class Measured:
    """One configuration: a label, its Cycles settings and its Cycles seed."""

    name: str
    quality: Quality
    seed: int = 0


def configurations(reference_samples: int, names: list[str]) -> tuple[list[Measured], Measured]:
    """The measured configurations called `names` (presets, or "1-sample": the default preset at one
    sample, no denoiser) and the reference."""
    one_sample = replace(quality_preset("default"), samples=1, denoise=False)
    measured = [Measured(name, one_sample if name == ONE_SAMPLE else quality_preset(name)) for name in names]
    reference_quality = replace(
        quality_preset(BASELINE), samples=reference_samples, adaptive_threshold=0.0, denoise=False
    )
    return measured, Measured("reference", reference_quality, REFERENCE_SEED)


# --- pure measures -----------------------------------------------------------------------------------------
def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 `image` against `reference` (same shape), peak 255."""
    error = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


def rotated(items: list, shift: int) -> list:
    """`items` rotated left by `shift` (the configuration order of one object)."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def summarise(records: list[dict], views: int) -> dict:
    """Per-image figures of one configuration from its per-object records (seconds per object and of its
    set-up, seconds in Scene.render per view, PSNRs per view)."""
    images = len(records) * views
    seconds = sum(r["seconds"] for r in records)
    setup = sum(r["setup_seconds"] for r in records)
    render_seconds = sum(sum(r["render_seconds"]) for r in records)
    return {
        "images": images,
        "seconds_per_image": seconds / images,
        "median_object_seconds_per_image": statistics.median(r["seconds"] / views for r in records),
        "cpu_seconds_per_image": sum(r["cpu_seconds"] for r in records) / images,
        "object_setup_seconds_per_image": setup / images,
        "render_call_seconds_per_image": render_seconds / images,
        "view_overhead_seconds_per_image": (seconds - setup - render_seconds) / images,
        "psnr": statistics.fmean(p for r in records for p in r["psnr"]),
        "psnr_min": min(p for r in records for p in r["psnr"]),
        "psnr_jpeg": statistics.fmean(p for r in records for p in r["psnr_jpeg"]),
    }


# --- worker processes (one Blender scene each) -------------------------------------------------------------
_TAP: dict = {}


def _start_worker(measured: Measured, config: launch.RenderConfig, source, threads: int) -> None:
    """Build the worker's scene like `3die render` does, and tap its renders (pixels and seconds) and its
    first latent application of each object (when the object's set-up ends)."""
    sys.path[:] = launch.without_blender_script_paths(sys.path)
    from render.scene import RenderSettings, Scene

    scene = Scene(RenderSettings(config.size, measured.quality, config.device, threads, measured.seed))
    render, apply_latent = scene.render, scene.apply_latent

    def tapped_render() -> np.ndarray:
        start = time.perf_counter()
        image = render()
        _TAP["seconds"].append(time.perf_counter() - start)
        _TAP["images"].append(image)
        return image

    def tapped_apply_latent(latent: np.ndarray) -> None:
        _TAP.setdefault("first_view", time.perf_counter())
        apply_latent(latent)

    scene.render, scene.apply_latent = tapped_render, tapped_apply_latent
    _TAP.update(scene=scene, config=config, source=source, seconds=[], images=[])


def _render_object(obj: ObjectSpec) -> dict:
    """Render every view of `obj` with `render.launch.render_object`: wall and CPU seconds, seconds of the
    object's set-up (mesh, Blender object) before its first view, seconds in Scene.render per view, and
    the rendered pixels."""
    _TAP["seconds"].clear()
    _TAP["images"].clear()
    _TAP.pop("first_view", None)
    shutil.rmtree(writer.object_dir(_TAP["config"].out, obj), ignore_errors=True)  # a complete one is skipped
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = launch.render_object(_TAP["scene"], _TAP["source"], obj, _TAP["config"])
    end, cpu = time.perf_counter(), time.process_time() - cpu
    if outcome.failure is not None or outcome.elsewhere:
        raise RuntimeError(f"{obj.key}: {outcome.failure or 'claimed by another process'}")
    return {
        "seconds": end - wall,
        "setup_seconds": _TAP["first_view"] - wall,
        "cpu_seconds": cpu,
        "render_seconds": list(_TAP["seconds"]),
        "images": list(_TAP["images"]),
    }


def _worker_pool(
    measured: Measured, config: launch.RenderConfig, source, threads: int
) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(measured, config, source, threads),
    )


# --- the run ---------------------------------------------------------------------------------------------
def main() -> None:
    arguments = parse_arguments()
    out = arguments.out
    source = ProceduralSource(tuple(arguments.classes.split(",")), per_class=1, seed=arguments.seed)
    objects = source.objects()[: arguments.objects]
    measured, reference = configurations(arguments.reference_samples, arguments.only.split(","))
    threads = launch.threads_per_worker(1)
    machine = machine_description()
    print(f"{machine['cpu']}, {machine['cores']} cores, bpy {machine['bpy']}, load {machine['load_start']}")
    print(
        f"{len(objects)} objects x {arguments.views} views at {arguments.size} px, {threads} Cycles threads"
    )

    def dataset_config(name: str) -> launch.RenderConfig:
        return launch.RenderConfig(
            out / name, arguments.views, arguments.size, "default", arguments.seed, "published", "cpu"
        )

    references = reference_images(out, reference, objects, arguments, dataset_config, source, threads)
    pools = {m.name: _worker_pool(m, dataset_config(m.name), source, threads) for m in measured}
    try:
        warm_up(pools, objects[0])
        records = {m.name: [] for m in measured}
        for index, obj in enumerate(objects):
            for name in rotated([m.name for m in measured], index):
                record = pools[name].submit(_render_object, obj).result()
                records[name].append(scored(record, references[obj.key], out / name, obj))
                print(f"{obj.key} {name}: {record['seconds'] / arguments.views:.3f} s/image", flush=True)
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    machine["load_end"] = load_average()
    results = {
        "machine": machine,
        "objects": [o.key for o in objects],
        "views": arguments.views,
        "size": arguments.size,
        "threads": threads,
        "reference": {"samples": arguments.reference_samples, "seed": REFERENCE_SEED},
        "qualities": {m.name: m.quality.as_dict() for m in measured},
        "configurations": {name: summarise(rows, arguments.views) for name, rows in records.items()},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    print(f"wrote {out / 'results.json'}")


def warm_up(pools: dict, obj: ObjectSpec) -> None:
    """One untimed object per worker: the first render of a process builds Cycles' kernels and scene."""
    for pool in pools.values():
        pool.submit(_render_object, obj).result()


def reference_images(out, reference, objects, arguments, dataset_config, source, threads) -> dict:
    """Object key -> reference images (views, H, W, 3) uint8, rendered now or read from OUT/reference/."""
    folder = out / "reference" / f"{arguments.size}px-{arguments.reference_samples}spp-seed{arguments.seed}"
    images = {o.key: _read_reference(folder, o, arguments.views) for o in objects}
    missing = [o for o in objects if images[o.key] is None]
    if missing:
        print(f"rendering {len(missing)} reference objects at {arguments.reference_samples} samples")
        with _worker_pool(reference, dataset_config("reference-views"), source, threads) as pool:
            for obj in missing:
                start = time.perf_counter()
                images[obj.key] = np.stack(pool.submit(_render_object, obj).result()["images"])
                _write_reference(folder, obj, images[obj.key])
                print(f"{obj.key} reference: {time.perf_counter() - start:.0f} s", flush=True)
    return images


def _read_reference(folder: Path, obj: ObjectSpec, views: int) -> np.ndarray | None:
    paths = [folder / obj.synset / obj.object_id / f"view_{v}.png" for v in range(views)]
    if not all(p.is_file() for p in paths):
        return None
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _write_reference(folder: Path, obj: ObjectSpec, images: np.ndarray) -> None:
    target = folder / obj.synset / obj.object_id
    target.mkdir(parents=True, exist_ok=True)
    for view, image in enumerate(images):
        Image.fromarray(image).save(target / f"view_{view}.png")


def scored(record: dict, reference: np.ndarray, root: Path, obj: ObjectSpec) -> dict:
    """The record with PSNRs of the tapped pixels and of the written JPEGs, without the pixels."""
    folder = launch.writer.object_dir(root, obj)
    jpegs = [
        np.asarray(Image.open(folder / spec.image_name(v)).convert("RGB")) for v in range(len(reference))
    ]
    return {
        "seconds": record["seconds"],
        "setup_seconds": record["setup_seconds"],
        "cpu_seconds": record["cpu_seconds"],
        "render_seconds": record["render_seconds"],
        "psnr": [psnr(image, ref) for image, ref in zip(record["images"], reference, strict=True)],
        "psnr_jpeg": [psnr(image, ref) for image, ref in zip(jpegs, reference, strict=True)],
    }


def markdown_table(results: dict) -> str:
    """The results as a Markdown table: seconds per image and their parts, speed-up, PSNR."""
    rows = results["configurations"]
    baseline = rows[BASELINE]["seconds_per_image"] if BASELINE in rows else float("nan")
    lines = [
        "| configuration | s/image | median s/image | x faster than published-raw | CPU s/image "
        "| object set-up | in Scene.render | rest of the view | PSNR dB (min) | PSNR JPEG dB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['seconds_per_image']:.3f} | {row['median_object_seconds_per_image']:.3f} "
            f"| {baseline / row['seconds_per_image']:.1f} | {row['cpu_seconds_per_image']:.3f} "
            f"| {row['object_setup_seconds_per_image']:.4f} | {row['render_call_seconds_per_image']:.4f} "
            f"| {row['view_overhead_seconds_per_image']:.4f} "
            f"| {row['psnr']:.2f} ({row['psnr_min']:.2f}) | {row['psnr_jpeg']:.2f} |"
        )
    return "\n".join(lines)


def machine_description() -> dict:
    """CPU model, usable cores, bpy and Python versions, load average."""
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "bpy": metadata.version("bpy"),
        "python": platform.python_version(),
        "load_start": load_average(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (how busy other processes kept the machine)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/3die-render-speed"), help="Work folder.")
    parser.add_argument("--classes", default=",".join(DEFAULT_CLASSES), help="One object per class.")
    parser.add_argument("--objects", type=int, default=3, help="Objects (the first N classes).")
    parser.add_argument("--views", type=int, default=3, help="Views per object.")
    parser.add_argument("--size", type=int, default=spec.IMAGE_SIZE, help="Image size in pixels.")
    parser.add_argument("--seed", type=int, default=0, help="Dataset seed (objects and latents).")
    parser.add_argument("--reference-samples", type=int, default=1024, help="Samples of the reference.")
    parser.add_argument("--only", default=",".join(MEASURED), help="Configurations to measure.")
    return parser.parse_args()


if __name__ == "__main__":
    main()
