"""Every loss against an independent NumPy computation written here from the published formulas."""

import numpy as np
import pytest
import torch

from sie_models import losses

torch.set_num_threads(1)

EPS = 1e-4  # inside the VICReg square root


def rng_batches(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.7, size=shape) for shape in shapes]


def tensors(*arrays):
    return [torch.tensor(array, dtype=torch.float64) for array in arrays]


# --- independent references -----------------------------------------------------------------------


def np_hinge(z):
    std = np.sqrt(z.var(axis=0, ddof=1) + EPS)
    return np.mean(np.maximum(0.0, 1.0 - std))


def np_covariance(z):
    d = z.shape[1]
    cov = np.cov(z, rowvar=False)  # unbiased, (d, d)
    return (cov**2).sum() / d - (np.diag(cov) ** 2).sum() / d


def np_vicreg(z1, z2, sim, std, cov):
    invariance = np.mean((z1 - z2) ** 2)
    variance = (np_hinge(z1) + np_hinge(z2)) / 2
    covariance = np_covariance(z1) + np_covariance(z2)
    return sim * invariance + std * variance + cov * covariance, (invariance, variance, covariance)


def np_info_nce(z1, z2, temperature):
    features = np.concatenate([z1, z2])
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        logits = {j: features[i] @ features[j] / temperature for j in range(2 * n) if j != i}
        total += -logits[positive] + np.log(sum(np.exp(v) for v in logits.values()))
    return total / (2 * n)


def np_sie(inv1, inv2, equi1, equi2, predicted):
    """SIE with sim 10, std 10, cov 1, equi_factor 0.45 and the predictor-variance term."""
    z1, z2 = np.concatenate([inv1, equi1], axis=1), np.concatenate([inv2, equi2], axis=1)
    return (
        10 * np.mean((inv1 - inv2) ** 2)
        + 0.45 * 10 * np.mean((predicted - equi2) ** 2)
        + 10 * (np_hinge(z1) + np_hinge(z2)) / 2
        + 10 * np_hinge(predicted) / 2
        + np_covariance(z1)
        + np_covariance(z2)
    )


def np_equimod_vicreg(z1, z2, equi1, equi2, predicted):
    invariant, _ = np_vicreg(z1, z2, 10, 10, 1)
    equivariant = (
        10 * np.mean((predicted - equi2) ** 2)
        + 10 * (np_hinge(equi1) + np_hinge(equi2)) / 2
        + np_covariance(equi1)
        + np_covariance(equi2)
    )
    return invariant + 0.3 * equivariant


# --- VICReg terms ---------------------------------------------------------------------------------


def test_vicreg_terms_and_total():
    z1, z2 = rng_batches((12, 6), (12, 6))
    total, terms = losses.vicreg_loss(*tensors(z1, z2), sim_coeff=25.0, std_coeff=15.0, cov_coeff=2.0)
    expected_total, (invariance, variance, covariance) = np_vicreg(z1, z2, 25.0, 15.0, 2.0)
    assert np.isclose(terms["invariance"].item(), invariance)
    assert np.isclose(terms["variance"].item(), variance)
    assert np.isclose(terms["covariance"].item(), covariance)
    assert np.isclose(total.item(), expected_total)


def test_variance_term_is_the_average_of_the_halved_view_hinges():
    """Official VICReg: collapsed view 1 (hinge 1 - sqrt(1e-4) = 0.99), spread view 2 (hinge 0) -> 0.495.

    An implementation that sums the two views' hinges (a known library discrepancy) gives 0.99.
    """
    collapsed = torch.zeros(10, 4)
    spread = torch.randn(10, 4) * 5 + torch.arange(10.0)[:, None]
    assert losses.variance_hinge(spread).item() == 0.0
    assert np.isclose(losses.variance_loss(collapsed, spread).item(), (1 - np.sqrt(EPS)) / 2)
    assert np.isclose(losses.variance_loss(spread, collapsed).item(), 0.495)


def test_covariance_term_ignores_the_diagonal_and_divides_by_dimension():
    z = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])  # perfectly correlated columns
    # cov = [[1, 2], [2, 4]] -> off-diagonal squares 2 * 4 = 8, divided by d = 2.
    assert np.isclose(losses.covariance_term(z).item(), 4.0)
    (z1,) = rng_batches((9, 5), seed=3)
    assert np.isclose(losses.covariance_term(torch.tensor(z1)).item(), np_covariance(z1))


# --- contrastive ----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_info_nce_matches_a_per_row_computation(temperature):
    z1, z2 = rng_batches((7, 5), (7, 5), seed=1)
    loss = losses.info_nce_loss(*tensors(z1, z2), temperature=temperature)
    assert np.isclose(loss.item(), np_info_nce(z1, z2, temperature))


def test_info_nce_prefers_aligned_views():
    z1 = torch.randn(8, 16)
    aligned = losses.info_nce_loss(z1, z1 + 0.01 * torch.randn(8, 16), temperature=0.1)
    shuffled = losses.info_nce_loss(z1, z1.roll(1, dims=0), temperature=0.1)
    assert aligned < shuffled


def test_hinge_energy_matches_the_published_formula():
    """Positive energy of each prediction; the negative hinge applied to every pair of distinct states
    (the expectation of the published one-random-negative term), then averaged."""
    predicted, target, state = rng_batches((6, 4), (6, 4), (6, 4), seed=2)
    sigma, hinge = 0.5, 12.0
    total, terms = losses.hinge_energy_loss(*tensors(predicted, target, state), hinge=hinge, sigma=sigma)
    norm = 0.5 / sigma**2
    positive = np.mean([norm * ((predicted[i] - target[i]) ** 2).sum() for i in range(6)])
    pair_hinges = [
        max(0.0, hinge - norm * ((state[i] - state[j]) ** 2).sum())
        for i in range(6)
        for j in range(6)
        if j != i
    ]
    negative = np.mean(pair_hinges)
    assert min(pair_hinges) == 0 < max(pair_hinges)  # the hinge is active for some pairs, not all
    assert np.isclose(terms["positive_energy"].item(), positive)
    assert np.isclose(terms["negative_hinge"].item(), negative)
    assert np.isclose(total.item(), positive + negative)


def test_hinge_energy_penalises_collapsed_clusters():
    """Two tight clusters far apart: every state is far from the batch on average, yet half of the pairs
    are collapsed, and the per-pair hinge counts them."""
    state = torch.cat([torch.zeros(4, 3), torch.full((4, 3), 10.0)])
    _, terms = losses.hinge_energy_loss(state, state, state, hinge=1.0, sigma=0.5)
    within_cluster_pairs = 2 * 4 * 3
    assert np.isclose(terms["negative_hinge"].item(), within_cluster_pairs / (8 * 7))


# --- composite objectives -------------------------------------------------------------------------


@pytest.mark.parametrize("predictor_variance", [True, False])
def test_sie_total_with_paper_coefficients(predictor_variance):
    inv1, inv2, equi1, equi2, predicted = rng_batches((10, 4), (10, 4), (10, 3), (10, 3), (10, 3), seed=4)
    total, terms = losses.sie_loss(
        *tensors(inv1, inv2, equi1, equi2, predicted),
        sim_coeff=10.0,
        std_coeff=10.0,
        cov_coeff=1.0,
        equi_factor=0.45,
        predictor_variance=predictor_variance,
    )
    z1, z2 = np.concatenate([inv1, equi1], axis=1), np.concatenate([inv2, equi2], axis=1)
    invariance = np.mean((inv1 - inv2) ** 2)
    equivariance = np.mean((predicted - equi2) ** 2)
    variance = (np_hinge(z1) + np_hinge(z2)) / 2
    predictor_var = np_hinge(predicted) / 2
    covariance = np_covariance(z1) + np_covariance(z2)
    expected = 10 * invariance + 0.45 * 10 * equivariance + 10 * variance + 1 * covariance
    if predictor_variance:
        expected += 10 * predictor_var
    assert np.isclose(terms["invariance"].item(), invariance)
    assert np.isclose(terms["equivariance"].item(), equivariance)
    assert np.isclose(terms["variance"].item(), variance)
    assert np.isclose(terms["predictor_variance"].item(), predictor_var)
    assert np.isclose(terms["covariance"].item(), covariance)
    assert np.isclose(total.item(), expected)


def test_sie_without_invariant_part():
    equi1, equi2, predicted = rng_batches((10, 3), (10, 3), (10, 3), seed=5)
    total, terms = losses.sie_loss(
        None,
        None,
        *tensors(equi1, equi2, predicted),
        sim_coeff=10.0,
        std_coeff=10.0,
        cov_coeff=1.0,
        equi_factor=1.0,
    )
    expected = (
        10 * np.mean((predicted - equi2) ** 2)
        + 10 * (np_hinge(equi1) + np_hinge(equi2)) / 2
        + 10 * np_hinge(predicted) / 2
        + np_covariance(equi1)
        + np_covariance(equi2)
    )
    assert "invariance" not in terms
    assert np.isclose(total.item(), expected)


def test_partial_vicreg_leaves_the_equivariant_dims_out_of_invariance():
    z1, z2 = rng_batches((10, 6), (10, 6), seed=6)
    total, terms = losses.partial_vicreg_loss(
        *tensors(z1, z2), invariant_dims=4, sim_coeff=10.0, std_coeff=10.0, cov_coeff=1.0
    )
    _, (_, variance, covariance) = np_vicreg(z1, z2, 10, 10, 1)
    invariance = np.mean((z1[:, :4] - z2[:, :4]) ** 2)
    assert np.isclose(terms["invariance"].item(), invariance)
    assert np.isclose(total.item(), 10 * invariance + 10 * variance + covariance)


def test_augself_and_equimod_compositions():
    z1, z2, predicted_action, action, equi1, equi2, predicted = rng_batches(
        (8, 5), (8, 5), (8, 4), (8, 4), (8, 5), (8, 5), (8, 5), seed=7
    )
    total, _ = losses.augself_loss(
        *tensors(z1, z2, predicted_action, action), temperature=0.1, augself_weight=0.7
    )
    expected = np_info_nce(z1, z2, 0.1) + 0.7 * np.mean((predicted_action - action) ** 2)
    assert np.isclose(total.item(), expected)

    total, _ = losses.equimod_contrastive_loss(
        *tensors(z1, z2, predicted, equi2), temperature=0.2, equi_weight=0.5
    )
    assert np.isclose(total.item(), np_info_nce(z1, z2, 0.2) + 0.5 * np_info_nce(predicted, equi2, 0.2))

    total, terms = losses.equimod_vicreg_loss(
        *tensors(z1, z2, equi1, equi2, predicted),
        sim_coeff=10.0,
        std_coeff=10.0,
        cov_coeff=1.0,
        equi_weight=0.3,
    )
    assert np.isclose(total.item(), np_equimod_vicreg(z1, z2, equi1, equi2, predicted))
    assert {"invariance", "equivariance", "equivariant_variance", "equivariant_covariance"} <= set(terms)


def test_gather_is_the_identity_without_a_process_group():
    z = torch.randn(3, 2, requires_grad=True)
    assert losses.gather_batch(z) is z


# --- gradients: every input of every objective, against the NumPy formulas ----------------------


VICREG = {"sim_coeff": 10.0, "std_coeff": 10.0, "cov_coeff": 1.0}
GRADIENT_CASES = {
    "sie": (
        lambda *z: losses.sie_loss(*z, **VICREG, equi_factor=0.45),
        np_sie,
        [(6, 3), (6, 3), (6, 2), (6, 2), (6, 2)],
    ),
    "vicreg": (
        lambda *z: losses.vicreg_loss(*z, **VICREG),
        lambda z1, z2: np_vicreg(z1, z2, 10, 10, 1)[0],
        [(6, 4), (6, 4)],
    ),
    "partial-vicreg": (
        lambda *z: losses.partial_vicreg_loss(*z, invariant_dims=3, **VICREG),
        lambda z1, z2: (
            10 * np.mean((z1[:, :3] - z2[:, :3]) ** 2)
            + np_vicreg(z1, z2, 10, 10, 1)[0]
            - 10 * np.mean((z1 - z2) ** 2)
        ),
        [(6, 4), (6, 4)],
    ),
    "info-nce": (
        lambda *z: (losses.info_nce_loss(*z, temperature=0.2), {}),
        lambda z1, z2: np_info_nce(z1, z2, 0.2),
        [(5, 3), (5, 3)],
    ),
    "augself": (
        lambda *z: losses.augself_loss(*z, temperature=0.1, augself_weight=0.7),
        lambda z1, z2, p, a: np_info_nce(z1, z2, 0.1) + 0.7 * np.mean((p - a) ** 2),
        [(5, 3), (5, 3), (5, 2), (5, 2)],
    ),
    "equimod-simclr": (
        lambda *z: losses.equimod_contrastive_loss(*z, temperature=0.2, equi_weight=0.5),
        lambda z1, z2, p, e2: np_info_nce(z1, z2, 0.2) + 0.5 * np_info_nce(p, e2, 0.2),
        [(5, 3), (5, 3), (5, 3), (5, 3)],
    ),
    "equimod-vicreg": (
        lambda *z: losses.equimod_vicreg_loss(*z, **VICREG, equi_weight=0.3),
        np_equimod_vicreg,
        [(6, 3), (6, 3), (6, 3), (6, 3), (6, 3)],
    ),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_gradients_reach_every_input_as_the_formula_says(name):
    """Autograd's gradient of each objective with respect to each of its inputs equals the central finite
    difference of the NumPy formula: a detached target (e.g. SIE's equi2) or input shows here."""
    objective, formula, shapes = GRADIENT_CASES[name]
    arrays = rng_batches(*shapes, seed=8)
    inputs = [tensor.requires_grad_() for tensor in tensors(*arrays)]
    total, _ = objective(*inputs)
    gradients = torch.autograd.grad(total, inputs)
    assert np.isclose(total.item(), formula(*arrays))
    step = 1e-6
    for which, (array, gradient) in enumerate(zip(arrays, gradients, strict=True)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            values = []
            for sign in (1, -1):
                moved = [a.copy() for a in arrays]
                moved[which][index] += sign * step
                values.append(formula(*moved))
            numeric[index] = (values[0] - values[1]) / (2 * step)
        assert np.abs(numeric).max() > 1e-3, f"input {which} must matter to the formula"
        np.testing.assert_allclose(gradient.numpy(), numeric, rtol=1e-5, atol=1e-7, err_msg=f"input {which}")
