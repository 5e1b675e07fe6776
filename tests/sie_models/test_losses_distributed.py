"""Two gloo processes with batch B each give the loss and gradients of one process with batch 2B.

Each process computes every objective over the gathered global batch; its gradients, averaged over the
processes (what DistributedDataParallel does), must equal the single-process gradients.
"""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sie_models import build_method, list_methods, losses

WORLD_SIZE = 2
LOCAL_BATCH = 4
TINY = {"image_size": 16, "width": 2, "num_classes": 3, "projector": "12-12-12"}


def loss_cases():
    """name -> (input shapes, function of the input tensors returning a scalar loss)."""
    return {
        "vicreg": (
            [(8,), (8,)],
            lambda a, b: losses.vicreg_loss(a, b, sim_coeff=10, std_coeff=10, cov_coeff=1)[0],
        ),
        "variance": (
            [(8,), (8,)],
            lambda a, b: losses.variance_loss(losses.gather_batch(a), losses.gather_batch(b)),
        ),
        "info_nce": ([(8,), (8,)], lambda a, b: losses.info_nce_loss(a, b, temperature=0.1)),
        "sie": (
            [(4,), (4,), (6,), (6,), (6,)],
            lambda *z: losses.sie_loss(*z, sim_coeff=10, std_coeff=10, cov_coeff=1, equi_factor=0.45)[0],
        ),
        "hinge": ([(6,), (6,), (6,)], lambda *z: losses.hinge_energy_loss(*z, hinge=20.0, sigma=0.5)[0]),
    }


def global_inputs(name, shapes):
    generator = torch.Generator().manual_seed(list(loss_cases()).index(name))
    return [torch.randn(WORLD_SIZE * LOCAL_BATCH, *shape, generator=generator) for shape in shapes]


def method_inputs(method):
    generator = torch.Generator().manual_seed(7)
    n = WORLD_SIZE * LOCAL_BATCH
    views = torch.randn(2, n, 3, 16, 16, generator=generator)
    return views[0], views[1], torch.randn(n, method.action_dim, generator=generator), torch.arange(n) % 3


def tiny_method(name):
    torch.manual_seed(0)
    # Eval mode: batch norm uses running statistics, so every non-loss layer is per-sample and the
    # comparison isolates the objectives' global statistics.
    return build_method(name, **TINY).eval()


def run_loss(name, inputs):
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    _, function = loss_cases()[name]
    value = function(*leaves)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def run_method(name, rows):
    method = tiny_method(name)
    view1, view2, action, labels = (x[rows] for x in method_inputs(method))
    out = method(view1, view2, action, labels)
    out.loss.backward()
    return out, {key: p.grad.clone() for key, p in method.named_parameters() if p.grad is not None}


def worker(rank, init_file, results_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    results = {"losses": {}, "methods": {}}
    for name, (shapes, _) in loss_cases().items():
        value, grads = run_loss(name, [x[rows] for x in global_inputs(name, shapes)])
        results["losses"][name] = (value, grads)
    for name in list_methods():
        out, grads = run_method(name, rows)
        for grad in grads.values():
            dist.all_reduce(grad)
            grad /= WORLD_SIZE
        results["methods"][name] = (out.loss.detach(), out.stats["objective"], grads)
    torch.save(results, f"{results_file}.{rank}")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(worker, args=(str(folder / "init"), str(folder / "results")), nprocs=WORLD_SIZE, join=True)
    return [torch.load(folder / f"results.{rank}") for rank in range(WORLD_SIZE)]


@pytest.mark.parametrize("name", list(loss_cases()))
def test_loss_functions_match_one_process(distributed_results, name):
    torch.set_num_threads(1)
    shapes, _ = loss_cases()[name]
    value, grads = run_loss(name, global_inputs(name, shapes))
    for rank, results in enumerate(distributed_results):
        rank_value, rank_grads = results["losses"][name]
        assert torch.allclose(rank_value, value, atol=1e-5), (name, rank)
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        for grad, rank_grad in zip(grads, rank_grads, strict=True):
            # A process's inputs get world_size times the single-process gradient; DDP's averaging of
            # the parameter gradients divides it back.
            assert torch.allclose(rank_grad / WORLD_SIZE, grad[rows], atol=1e-5), (name, rank)


@pytest.mark.parametrize("name", list_methods())
def test_methods_match_one_process(distributed_results, name):
    torch.set_num_threads(1)
    out, grads = run_method(name, slice(None))
    rank_losses = [results["methods"][name][0] for results in distributed_results]
    # Objectives are global (same on every process); probe losses are per-process means.
    assert torch.allclose(torch.stack(rank_losses).mean(), out.loss.detach(), atol=1e-4)
    for results in distributed_results:
        _, objective, rank_grads = results["methods"][name]
        assert torch.allclose(objective, out.stats["objective"], atol=1e-4)
        assert rank_grads.keys() == grads.keys()
        for key, grad in grads.items():
            assert torch.allclose(rank_grads[key], grad, atol=1e-4, rtol=1e-3), (name, key)
