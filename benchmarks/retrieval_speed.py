"""Retrieval ranks: the vectorised implementation (`benchmark.evaluate.retrieval_ranks`) against the per-query
reference loop (`retrieval_ranks_loop`) at the size of the 3DIEBench validation split.

Embeddings are random (N objects x V views x d dims, float32); the predictions come from a random linear
hypernetwork predictor like SIE's (the action quaternion from view 0 to view i weights four random d x d
maps applied to view 0's embedding), computed once before timing. Both implementations rank the same
N x (V - 1) predictions among their object's V views. The loop runs on --loop-objects objects drawn at
random and its time is extrapolated linearly to N (it does the same work per query); the vectorised ranks
of those objects must equal the loop's, and so must their MRR and Hit@k. The vectorised version uses all
torch threads unless --threads says otherwise; the loop is NumPy, one query at a time.

    .venv/bin/python benchmarks/retrieval_speed.py [--objects 10552] [--dim 1024] [--loop-objects 1000]
        [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark.evaluate import ranking_metrics, retrieval_ranks, retrieval_ranks_loop, view_zero_queries
from benchmark.evaluate.run import describe_hardware
from render import spec


def main() -> None:
    arguments = parse_arguments()
    if arguments.threads:
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
    subset = np.sort(
        np.random.default_rng(arguments.seed + 1).permutation(arguments.objects)[: arguments.loop_objects]
    )
    vectorised_times, loop_parts, loop_ranks = [], [], []
    # Alternating the two spreads the load of other processes over both.
    for part in np.array_split(subset, arguments.repeats):
        ranks, wall, cpu = timed(lambda: retrieval_ranks(predicted, embeddings, targets, device))
        vectorised_times.append((wall, cpu))
        part_ranks, wall, cpu = timed(
            lambda rows=part: retrieval_ranks_loop(predicted[rows], embeddings[rows], targets[rows])
        )
        loop_parts.append((wall, cpu))
        loop_ranks.append(part_ranks)
    loop_ranks = np.concatenate(loop_ranks)
    vectorised = [statistics.median(times) for times in zip(*vectorised_times, strict=True)]
    scale = arguments.objects / len(subset)
    loop = [scale * sum(times) for times in zip(*loop_parts, strict=True)]
    measured = "measured" if len(subset) == arguments.objects else "extrapolated linearly"
    print(
        f"vectorised, all queries: wall {vectorised[0]:.2f} s, CPU {vectorised[1]:.2f} s (median of "
        f"{arguments.repeats}; wall {', '.join(f'{wall:.2f}' for wall, _ in vectorised_times)})"
    )
    print(
        f"loop: {len(subset)} random objects, {loop_ranks.size} queries, "
        f"{1e6 * loop[0] / scale / loop_ranks.size:.1f} us per query; all queries ({measured}): "
        f"wall {loop[0]:.1f} s, CPU {loop[1]:.1f} s"
    )
    identical = np.array_equal(loop_ranks, ranks[subset])
    same_scores = ranking_metrics(loop_ranks) == ranking_metrics(ranks[subset])
    print(f"ranks identical on the loop's objects: {identical}; MRR and Hit@k identical: {same_scores}")
    print(f"MRR of all queries: {ranking_metrics(ranks)['mrr']:.4f}")
    print(f"speed-up: wall {loop[0] / vectorised[0]:.1f}x, CPU {loop[1] / vectorised[1]:.1f}x")
    if not (identical and same_scores):
        raise SystemExit("the vectorised ranks differ from the loop's")


def timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    """run()'s result, its wall-clock seconds and the CPU seconds of this process (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


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
    parser.add_argument("--loop-objects", type=int, default=1000, help="random objects the loop is timed on")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="vectorised runs (median reported), each followed by a part of the loop",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, all)")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    arguments.loop_objects = min(arguments.loop_objects, arguments.objects)
    return arguments


if __name__ == "__main__":
    main()
