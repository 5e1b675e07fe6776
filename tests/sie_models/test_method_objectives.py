"""Each method's reported objective against the paper's formula, computed here in NumPy (float64) from that
method's own embeddings with that method's configured coefficients: the method -> loss wiring.

The embeddings are the ones the criterion sees, captured by wrapping the method's public `embed` during its
forward pass; a second test checks they follow the paper's layout (which projector reads which part of the
representation, what the predictor is applied to). The formulas' building blocks are the independent
NumPy references of test_losses.py.
"""

import numpy as np
import pytest
import torch
from test_losses import np_covariance, np_hinge, np_info_nce, np_vicreg

from sie_models import build_method, list_methods

torch.set_num_threads(1)

TINY = {"image_size": 32, "width": 4, "num_classes": 5, "projector": "24-24-24"}
#: Pairwise distinct coefficients, so that a criterion passing one coefficient in place of another (or
#: dropping one) changes the objective; each method takes those of its own options.
DISTINCT_COEFFICIENTS = {
    "sim_coeff": 3.0,
    "std_coeff": 7.0,
    "cov_coeff": 0.5,
    "equi_factor": 0.3,
    "equi_weight": 0.6,
    "temperature": 0.2,
    "augself_weight": 0.8,
    "hinge": 4.0,
    "sigma": 0.9,
}
BATCH = 8


def tiny(name, coefficients):
    torch.manual_seed(0)
    config = build_method(name, **TINY).config
    return build_method(name, **TINY, **{key: value for key, value in coefficients.items() if key in config})


def random_batch(method, seed=1):
    generator = torch.Generator().manual_seed(seed)
    views = torch.randn(2, BATCH, 3, TINY["image_size"], TINY["image_size"], generator=generator)
    action = torch.randn(BATCH, method.action_dim, generator=generator)
    labels = torch.randint(0, TINY["num_classes"], (BATCH,), generator=generator)
    return views[0], views[1], action, labels


def run_capturing(method, batch):
    """The method's output, and the (rep1, rep2, action) and embeddings its criterion was given."""
    seen = {}
    original = method.embed

    def embed(rep1, rep2, action):
        seen["inputs"] = (rep1.detach(), rep2.detach(), action.detach())
        seen["embeddings"] = original(rep1, rep2, action)
        return seen["embeddings"]

    method.embed = embed
    try:
        output = method(*batch)
    finally:
        del method.embed
    return output, seen["inputs"], seen["embeddings"]


def to_numpy(embeddings):
    return {key: value.detach().double().numpy() for key, value in embeddings.items()}


# --- the paper's objectives, per method -----------------------------------------------------------


def mse(a, b):
    return np.mean((a - b) ** 2)


def vicreg_objective(e, c, action):
    return np_vicreg(e["z1"], e["z2"], c["sim_coeff"], c["std_coeff"], c["cov_coeff"])[0]


def simclr_objective(e, c, action):
    return np_info_nce(e["z1"], e["z2"], c["temperature"])


def sie_objective(e, c, action):
    """sim * MSE(inv) + equi_factor * sim * MSE(predicted, equi2) + std * variance of [inv, equi]
    + std * hinge(predicted) / 2 (predictor_variance only) + cov * covariance of [inv, equi]."""
    if "inv1" in e:
        z1, z2 = np.hstack([e["inv1"], e["equi1"]]), np.hstack([e["inv2"], e["equi2"]])
        invariance = mse(e["inv1"], e["inv2"])
    else:
        z1, z2, invariance = e["equi1"], e["equi2"], 0.0
    total = (
        c["sim_coeff"] * invariance
        + c["equi_factor"] * c["sim_coeff"] * mse(e["predicted"], e["equi2"])
        + c["std_coeff"] * (np_hinge(z1) + np_hinge(z2)) / 2
        + c["cov_coeff"] * (np_covariance(z1) + np_covariance(z2))
    )
    if c["predictor_variance"]:
        total += c["std_coeff"] * np_hinge(e["predicted"]) / 2
    return total


def partial_vicreg_objective(e, c, action):
    """VICReg whose invariance covers the leading (1 - equivariant_fraction) embedding dims only."""
    z1, z2 = e["z1"], e["z2"]
    invariant = z1.shape[1] - round(z1.shape[1] * c["equivariant_fraction"])
    _, (_, variance, covariance) = np_vicreg(z1, z2, 0, 0, 0)
    invariance = mse(z1[:, :invariant], z2[:, :invariant])
    return c["sim_coeff"] * invariance + c["std_coeff"] * variance + c["cov_coeff"] * covariance


def augself_objective(e, c, action):
    return np_info_nce(e["z1"], e["z2"], c["temperature"]) + c["augself_weight"] * mse(
        e["predicted_action"], action
    )


def equimod_simclr_objective(e, c, action):
    invariant = np_info_nce(e["inv1"], e["inv2"], c["temperature"])
    return invariant + c["equi_weight"] * np_info_nce(e["predicted"], e["equi2"], c["temperature"])


def equimod_vicreg_objective(e, c, action):
    invariant, _ = np_vicreg(e["inv1"], e["inv2"], c["sim_coeff"], c["std_coeff"], c["cov_coeff"])
    equivariant = (
        c["sim_coeff"] * mse(e["predicted"], e["equi2"])
        + c["std_coeff"] * (np_hinge(e["equi1"]) + np_hinge(e["equi2"])) / 2
        + c["cov_coeff"] * (np_covariance(e["equi1"]) + np_covariance(e["equi2"]))
    )
    return invariant + c["equi_weight"] * equivariant


def simclr_equi_only_objective(e, c, action):
    return np_info_nce(e["predicted"], e["equi2"], c["temperature"])


def sen_objective(e, c, action):
    """C-SWM energy d(a, b) = |a - b|^2 / (2 sigma^2): mean_i d(predicted_i, equi2_i)
    + mean over pairs i != j of max(0, hinge - d(equi1_i, equi1_j))."""
    energy = lambda a, b: ((a - b) ** 2).sum(-1) / (2 * c["sigma"] ** 2)  # noqa: E731
    state = e["equi1"]
    count = len(state)
    pairs = [max(0.0, c["hinge"] - energy(state[i], state[j])) for i in range(count) for j in range(count)]
    pairs = np.array(pairs).reshape(count, count)[~np.eye(count, dtype=bool)]
    return np.mean(energy(e["predicted"], e["equi2"])) + pairs.mean()


OBJECTIVES = {
    "vicreg": vicreg_objective,
    "simclr": simclr_objective,
    "sie": sie_objective,
    "sie-no-predvar": sie_objective,
    "sie-equi-only": sie_objective,
    "sie-rotcolor": sie_objective,
    "sie-mlp": sie_objective,
    "vicreg-partial": partial_vicreg_objective,
    "simclr-augself": augself_objective,
    "simclr-augself-rotcolor": augself_objective,
    "equimod-simclr": equimod_simclr_objective,
    "equimod-vicreg": equimod_vicreg_objective,
    "simclr-equi-only": simclr_equi_only_objective,
    "sen": sen_objective,
}


def test_every_method_has_a_reference_objective():
    assert sorted(OBJECTIVES) == sorted(list_methods())


@pytest.mark.parametrize("coefficients", [{}, DISTINCT_COEFFICIENTS], ids=["defaults", "distinct"])
@pytest.mark.parametrize("name", list_methods())
def test_objective_is_the_paper_formula_on_the_methods_embeddings(name, coefficients):
    method = tiny(name, coefficients)
    batch = random_batch(method)
    output, _, embeddings = run_capturing(method, batch)
    action = batch[2].double().numpy()
    expected = OBJECTIVES[name](to_numpy(embeddings), method.config, action)
    assert np.isclose(output.stats["objective"].item(), expected, rtol=1e-5, atol=1e-6)
    # The loss to back-propagate is the objective plus the online probes' loss.
    assert torch.isclose(output.loss, output.stats["objective"] + output.stats["probe_loss"])
    assert torch.equal(output.stats["loss"], output.loss.detach())


def test_the_no_predictor_variance_ablation_drops_a_nonzero_term():
    """sie and sie-no-predvar share weights and batch; their objectives differ by std * hinge(predicted) / 2,
    which is nonzero here, so the ablation's flag reaching the loss is observable."""
    outputs = {}
    for name in ("sie", "sie-no-predvar"):
        method = tiny(name, {})
        outputs[name], _, embeddings = run_capturing(method, random_batch(method))
    dropped = method.config["std_coeff"] * np_hinge(to_numpy(embeddings)["predicted"]) / 2
    assert dropped > 1e-3
    difference = outputs["sie"].stats["objective"] - outputs["sie-no-predvar"].stats["objective"]
    assert np.isclose(difference.item(), dropped, rtol=1e-4)


def test_sen_hinge_is_active_for_some_pairs_only():
    """With the distinct coefficients the hinge and sigma both shape SEN's negative term."""
    method = tiny("sen", DISTINCT_COEFFICIENTS)
    _, _, embeddings = run_capturing(method, random_batch(method))
    state = to_numpy(embeddings)["equi1"]
    distances = ((state[:, None] - state[None]) ** 2).sum(-1) / (2 * DISTINCT_COEFFICIENTS["sigma"] ** 2)
    off_diagonal = distances[~np.eye(len(state), dtype=bool)]
    assert off_diagonal.min() < DISTINCT_COEFFICIENTS["hinge"] < off_diagonal.max()


# --- the embeddings the criterion sees follow the paper's layout ----------------------------------


def paper_embeddings(name, method, rep1, rep2, action):
    """Recompute each method's embeddings from its modules, following the paper's architecture."""
    if name in ("vicreg", "simclr", "vicreg-partial", "simclr-augself", "simclr-augself-rotcolor"):
        embeddings = {"z1": method.projector(rep1), "z2": method.projector(rep2)}
        if name.startswith("simclr-augself"):
            embeddings["predicted_action"] = method.action_regressor(torch.cat([rep1, rep2], dim=1))
        return embeddings
    if name.startswith("sie"):
        representation = rep1.shape[1]
        invariant = representation - round(representation * method.config["equivariant_fraction"])
        equi1, equi2 = method.projector_equi(rep1[:, invariant:]), method.projector_equi(rep2[:, invariant:])
        embeddings = {"equi1": equi1, "equi2": equi2, "predicted": method.predictor(equi1, action)}
        if invariant:
            embeddings["inv1"] = method.projector_inv(rep1[:, :invariant])
            embeddings["inv2"] = method.projector_inv(rep2[:, :invariant])
        return embeddings
    equi1, equi2 = method.projector_equi(rep1), method.projector_equi(rep2)
    embeddings = {"equi1": equi1, "equi2": equi2, "predicted": method.predictor(equi1, action)}
    if name.startswith("equimod"):
        embeddings["inv1"], embeddings["inv2"] = method.projector_inv(rep1), method.projector_inv(rep2)
    return embeddings


@pytest.mark.parametrize("name", list_methods())
def test_embeddings_follow_the_paper_layout(name):
    method = tiny(name, {})
    batch = random_batch(method)
    _, (rep1, rep2, action), embeddings = run_capturing(method, batch)
    assert torch.equal(rep1, method.encode(batch[0]).detach()) and torch.equal(action, batch[2])
    with torch.no_grad():
        expected = paper_embeddings(name, method, rep1, rep2, action)
    assert sorted(embeddings) == sorted(expected)
    for key, value in expected.items():
        assert torch.allclose(embeddings[key], value, rtol=1e-5, atol=1e-6), key
