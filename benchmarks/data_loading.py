"""Training-sample throughput: a dataset folder read file by file against its packed HDF5 file.

Both readers go through the same `ViewPairs` + `ObjectSampler` + DataLoader (same workers, batch size and
image size); a sample is two decoded views, their latents and the action. The folder reader opens four
files per sample (two JPEGs, two .npy latents), as the published loader does; the packed reader reads two
JPEG buffers from one HDF5 file and keeps the latents in memory. The packed files are written first (not
timed): one with the rendered JPEGs as they are, one re-encoded at the training image size (`3die pack
--size`), one of raw pixels at that size (`3die pack --size --raw`), in a temporary folder under
`--scratch` (created when missing). Rounds alternate between the readers and the median rate of each is
reported, so that load from other processes affects all alike.

    .venv/bin/python benchmarks/data_loading.py --data DATASET_DIR [--image-size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from benchmark.data import EpochsSampler, ObjectSampler, ObjectViews, ViewPairs, open_dataset, pack_dataset

#: (label, pre-resized to the training size, raw pixels) of each packed file measured.
PACKINGS = (
    ("packed JPEGs as rendered", False, False),
    ("packed JPEGs pre-resized", True, False),
    ("packed raw pre-resized", True, True),
)


def main() -> None:
    arguments = parse_arguments()
    folder = open_dataset(arguments.data, arguments.split)
    if arguments.scratch is not None:
        arguments.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=arguments.scratch) as scratch:
        readers = {"folder (file by file)": folder}
        for label, size, raw in PACKINGS:
            size = arguments.image_size if size else None
            path = Path(scratch) / f"packed-{size or 'full'}{'-raw' if raw else ''}.h5"
            started = time.perf_counter()
            pack_dataset(arguments.data, path, size=size, workers=arguments.workers or 1, raw=raw)
            seconds, mebibytes = time.perf_counter() - started, path.stat().st_size / 2**20
            print(f"packed {label!r} in {seconds:.1f} s ({mebibytes:.1f} MiB)")
            readers[label] = open_dataset(path, arguments.split)
        rates = measure(readers, arguments)
    report(rates, folder, arguments)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (ours or the official one)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image-size", type=int, default=64, help="training image size (px)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for every reader")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="batches timed per round and reader")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per reader")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="folder for the packed files, created when missing (default: system temp)",
    )
    return parser.parse_args()


def measure(readers: dict[str, ObjectViews], arguments: argparse.Namespace) -> dict[str, list[float]]:
    """Samples per second of each reader, one value per round; rounds alternate between the readers."""
    loaders = {label: iter(_loader(views, arguments)) for label, views in readers.items()}
    for loader in loaders.values():
        next(loader)  # start the workers
    rates: dict[str, list[float]] = {label: [] for label in readers}
    for _ in range(arguments.rounds):
        for label, loader in loaders.items():
            started = time.perf_counter()
            for _ in range(arguments.batches):
                next(loader)
            rates[label].append(arguments.batches * arguments.batch_size / (time.perf_counter() - started))
    return rates


def _loader(views: ObjectViews, arguments: argparse.Namespace) -> DataLoader:
    pairs = ViewPairs(views, arguments.image_size, seed=0)
    return DataLoader(
        pairs,
        batch_size=arguments.batch_size,
        sampler=EpochsSampler(ObjectSampler(len(views), views.views, seed=0), first=0, last=None),
        collate_fn=pairs.collate,
        num_workers=arguments.workers,
        persistent_workers=arguments.workers > 0,
    )


def report(rates: dict[str, list[float]], folder: ObjectViews, arguments: argparse.Namespace) -> None:
    medians = {label: statistics.median(values) for label, values in rates.items()}
    baseline = medians["folder (file by file)"]
    print(
        f"\n{folder.path}: {len(folder)} objects x {folder.views} views of {_stored_size(folder)} px; "
        f"training images {arguments.image_size} px; {arguments.workers} DataLoader workers, batch "
        f"{arguments.batch_size}, {arguments.rounds} rounds x {arguments.batches} batches; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    )
    for label, median in medians.items():
        spread = ", ".join(f"{value:.0f}" for value in rates[label])
        print(f"{label:24s} {median:7.0f} samples/s ({2 * median:.0f} images/s)  x{median / baseline:.2f}")
        print(f"{'':24s} rounds: {spread}")
    best = max(medians, key=medians.get)
    print(f"ratio packed/folder: {medians[best] / baseline:.2f} ({best})")


def _stored_size(views: ObjectViews) -> int:
    return views.image(0, 0).shape[0]


if __name__ == "__main__":
    main()
