"""Retrieval ranks: the batched implementation (`benchmark.evaluate.retrieval_ranks`) against the per-query
reference loop (`retrieval_ranks_loop`) at the size of the 3DIEBench validation split.

Embeddings are random (N objects x V views x d dims, float32); the predictions come from a random linear
hypernetwork predictor like SIE's (the action quaternion from view 0 to view i weights four random d x d
maps applied to view 0's embedding), computed once before timing. Both implementations rank the same
N x (V - 1) predictions among their object's V views. The loop runs on the first --loop-objects objects
and its time is extrapolated linearly to N (it does the same work per query); the batched ranks of those
objects are checked to equal the loop's. Both run on one CPU thread unless --threads says otherwise: on
shared cores, idle-waiting worker threads make multi-threaded timings erratic.

    .venv/bin/python benchmarks/retrieval_speed.py [--objects 10552] [--dim 1024] [--loop-objects 500]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from benchmark.evaluate import ranking_metrics, retrieval_ranks, retrieval_ranks_loop, view_zero_queries
from benchmark.evaluate.run import describe_hardware
from render import spec


def main() -> None:
    arguments = parse_arguments()
    torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    predicted, embeddings, targets = random_case(
        arguments.objects, arguments.views, arguments.dim, arguments.seed
    )
    queries = targets.size
    print(
        f"{arguments.objects} objects x {arguments.views} views, dim {arguments.dim}: {queries} queries; "
        f"{describe_hardware(device)}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}"
    )
    batched_times = []
    for _ in range(arguments.repeats):
        started = time.perf_counter()
        ranks = retrieval_ranks(predicted, embeddings, targets, device)
        scores = ranking_metrics(ranks)
        batched_times.append(time.perf_counter() - started)
    batched = statistics.median(batched_times)
    print(
        f"batched: {batched:.2f} s for all queries (median of {arguments.repeats}); MRR {scores['mrr']:.4f}"
    )

    subset = slice(0, arguments.loop_objects)
    started = time.perf_counter()
    loop_ranks = retrieval_ranks_loop(predicted[subset], embeddings[subset], targets[subset])
    loop_subset = time.perf_counter() - started
    loop = loop_subset * arguments.objects / arguments.loop_objects
    identical = np.array_equal(loop_ranks, ranks[subset])
    print(
        f"loop: {loop_subset:.2f} s for the first {arguments.loop_objects} objects "
        f"({1e6 * loop_subset / loop_ranks.size:.1f} us per query), extrapolated to {loop:.1f} s for all"
    )
    print(f"ranks identical on the loop's objects: {identical}")
    print(f"speed-up: {loop / batched:.1f}x")
    if not identical:
        raise SystemExit("the batched ranks differ from the loop's")


def random_case(objects: int, views: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted (N, V-1, d), embeddings (N, V, d), targets (N, V-1)) from a random linear hypernetwork."""
    generator = np.random.default_rng(seed)
    embeddings = generator.standard_normal((objects, views, dim), dtype=np.float32)
    latents = generator.uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(objects, views, spec.LATENT_DIM))
    actions, targets = view_zero_queries(latents, 4)
    maps = generator.standard_normal((4, dim, dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32)
    mapped = np.einsum("kij,nj->nki", maps, embeddings[:, 0])
    predicted = np.einsum("nqk,nki->nqi", actions, mapped).astype(np.float32)
    return predicted, embeddings, targets


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_552, help="objects (3DIEBench validation: 10,552)")
    parser.add_argument("--views", type=int, default=spec.VIEWS_PER_OBJECT)
    parser.add_argument("--dim", type=int, default=1024, help="embedding size (SIE's equivariant: 1024)")
    parser.add_argument("--loop-objects", type=int, default=500, help="objects the loop is timed on")
    parser.add_argument("--repeats", type=int, default=3, help="batched runs (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: steady timings on shared cores, where idle-waiting threads stall)",
    )
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    arguments.loop_objects = min(arguments.loop_objects, arguments.objects)
    return arguments


if __name__ == "__main__":
    main()
