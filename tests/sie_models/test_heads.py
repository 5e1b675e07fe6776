import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch import nn

from sie_models.heads import (
    HypernetworkPredictor,
    MLPPredictor,
    OnlineProbes,
    RotationRepresentationPredictor,
    build_predictor,
    build_projector,
    parse_projector_spec,
    quaternion_to_matrix,
    r2_pooled_score,
    r2_score,
    split_dims,
    split_projector_spec,
)

torch.set_num_threads(1)


def random_quaternions(count: int, seed: int = 0) -> torch.Tensor:
    return torch.tensor(Rotation.random(count, random_state=seed).as_quat(), dtype=torch.float64)


# --- projectors and splits ------------------------------------------------------------------------


def test_projector_is_linear_bn_relu_then_plain_linear():
    head = build_projector(32, "64-48-16")
    kinds = [type(layer) for layer in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[-1].out_features) == (32, 64, 16)
    assert head[-1].bias is None
    assert head(torch.randn(5, 32)).shape == (5, 16)


@pytest.mark.parametrize("spec", ["", "2048-", "a-b", "0-16"])
def test_bad_projector_spec_is_rejected(spec):
    with pytest.raises(ValueError, match="projector spec"):
        parse_projector_spec(spec)


def test_sie_split_in_proportion():
    assert split_dims(512, 0.5) == (256, 256)
    assert split_projector_spec("2048-2048-2048", 0.5) == ("1024-1024-1024", "1024-1024-1024")
    assert split_projector_spec("2048-2048-2048", 0.25) == ("1536-1536-1536", "512-512-512")
    assert split_projector_spec("2048-2048-2048", 1.0) == (None, "2048-2048-2048")
    with pytest.raises(ValueError, match="equivariant_fraction"):
        split_dims(512, 0.0)
    for total, fraction in ((512, 0.9995), (3, 0.9), (4, 0.1)):  # one part would round to no dimension
        with pytest.raises(ValueError, match=f"equivariant_fraction {fraction} leaves an empty part"):
            split_dims(total, fraction)


# --- predictors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hypernetwork", "hypernetwork_bias", "bias"),
    [("linear", False, False), ("linear", True, True), ("deep", False, True)],
)
def test_hypernetwork_equals_explicit_per_sample_matrix_product(hypernetwork, hypernetwork_bias, bias):
    torch.manual_seed(0)
    dim, action_dim, batch = 6, 4, 5
    predictor = HypernetworkPredictor(
        dim, action_dim, hypernetwork=hypernetwork, hypernetwork_bias=hypernetwork_bias, bias=bias
    )
    embedding, action = torch.randn(batch, dim), torch.randn(batch, action_dim)
    expected = []
    for sample in range(batch):
        params = predictor.hypernetwork(action[sample : sample + 1])[0]
        weight = params[: dim * dim].reshape(dim, dim)  # (out, in), like nn.Linear
        output = weight @ embedding[sample]
        if bias:
            output = output + params[dim * dim :]
        expected.append(output)
    assert torch.allclose(predictor(embedding, action), torch.stack(expected), atol=1e-6)


def test_default_hypernetwork_is_one_bias_free_linear_map_of_the_action():
    torch.manual_seed(0)
    predictor = build_predictor("hypernetwork", 8, 4)
    (layer,) = predictor.hypernetwork
    assert isinstance(layer, nn.Linear) and layer.bias is None and layer.out_features == 64
    embedding, action = torch.randn(3, 8), torch.randn(3, 4)
    # Bias-free and linear in the action: W(2a) = 2 W(a).
    assert torch.allclose(predictor(embedding, 2 * action), 2 * predictor(embedding, action), atol=1e-5)
    weights, biases = predictor.matrices(action)
    manual = (layer.weight @ action.T).T.reshape(3, 8, 8)
    assert biases is None and torch.allclose(weights, manual, atol=1e-6)


def hamilton_product(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p * q for (..., 4) quaternions in SciPy order (x, y, z, w)."""
    x1, y1, z1, w1 = np.moveaxis(p, -1, 0)
    x2, y2, z2, w2 = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        ],
        axis=-1,
    )


def test_linear_hypernetwork_is_exactly_equivariant_on_pose_quaternions_under_the_dataset_action():
    # The training action is SciPy's quaternion of R1^-1 R2, not sign-canonicalised, so q2 = q1 * q12 holds
    # with its sign: an embedding holding the pose quaternion q1 maps to q2 by a matrix linear in q12,
    # which the bias-free linear hypernetwork represents exactly. Canonicalising the action (w >= 0) would
    # flip the sign of some predictions and break this.
    from benchmark.data import relative_action

    rng = np.random.default_rng(0)
    latents = np.zeros((2, 200, 7))
    latents[..., :3] = rng.uniform(-np.pi / 2, np.pi / 2, (2, 200, 3))
    action = relative_action(latents[0], latents[1]).astype(np.float64)
    assert (action[:, 3] < 0).any()  # some actions have a negative real part: the sign matters
    basis = np.eye(4)
    # coefficient of p_i q_j in (p * q)_o, laid out as the hypernetwork's (out * in, action) weight
    coefficients = np.stack([[hamilton_product(basis[i], basis[j]) for j in range(4)] for i in range(4)])
    predictor = HypernetworkPredictor(4, 4).double()
    with torch.no_grad():
        predictor.hypernetwork[0].weight.copy_(torch.tensor(coefficients.transpose(2, 0, 1).reshape(16, 4)))
    pose1, pose2 = (Rotation.from_euler("xyz", latents[view, :, :3]).as_quat() for view in (0, 1))
    predicted = predictor(torch.tensor(pose1), torch.tensor(action)).detach().numpy()
    np.testing.assert_allclose(predicted, pose2, atol=1e-6)


def test_mlp_predictor_reads_embedding_and_action():
    torch.manual_seed(0)
    predictor = MLPPredictor(8, 4, layers=2)
    assert [type(layer) for layer in predictor.net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert predictor.net[0].in_features == 12
    embedding, action = torch.randn(3, 8), torch.randn(3, 4)
    assert predictor(embedding, action).shape == (3, 8)
    assert not torch.allclose(predictor(embedding, action), predictor(embedding, action.flip(0)))
    with pytest.raises(ValueError, match="unknown predictor"):
        build_predictor("transformer", 8, 4)


def test_quaternion_to_matrix_matches_scipy():
    quaternions = random_quaternions(16)
    expected = Rotation.from_quat(quaternions.numpy()).as_matrix()
    assert np.allclose(quaternion_to_matrix(quaternions).numpy(), expected, atol=1e-12)


def test_fixed_rotation_action_composes_with_relative_rotations():
    rotation = RotationRepresentationPredictor()
    r1, r2, r3 = (Rotation.random(4, random_state=seed) for seed in (1, 2, 3))
    relative = lambda a, b: torch.tensor((a.inv() * b).as_quat())  # noqa: E731
    # A latent made of the rows of R1 becomes exactly the rows of R2.
    rows_r1 = torch.tensor(r1.as_matrix()).reshape(4, 9)
    assert torch.allclose(rotation(rows_r1, relative(r1, r2)), torch.tensor(r2.as_matrix()).reshape(4, 9))
    embedding = torch.randn(4, 11, dtype=torch.float64)
    two_steps = rotation(rotation(embedding, relative(r1, r2)), relative(r2, r3))
    assert torch.allclose(two_steps, rotation(embedding, relative(r1, r3)))
    moved = rotation(embedding, relative(r1, r2))
    assert torch.allclose(moved[:, 9:], embedding[:, 9:])  # 11 mod 3 = 2 trivial dims
    assert torch.allclose(
        moved[:, :9].reshape(4, 3, 3).norm(dim=2), embedding[:, :9].reshape(4, 3, 3).norm(dim=2)
    )


def test_fixed_rotation_action_leaves_the_trivial_part_unchanged():
    r1, r2 = Rotation.random(5, random_state=1), Rotation.random(5, random_state=2)
    action = torch.tensor((r1.inv() * r2).as_quat())
    embedding = torch.randn(5, 4 + 6 + 1, dtype=torch.float64)
    moved = RotationRepresentationPredictor(trivial_dims=4)(embedding, action)
    assert torch.equal(moved[:, :4], embedding[:, :4]) and torch.equal(moved[:, 10:], embedding[:, 10:])
    expected = embedding[:, 4:10].reshape(5, 2, 3).numpy() @ (r1.inv() * r2).as_matrix()
    assert np.allclose(moved[:, 4:10].reshape(5, 2, 3).numpy(), expected)
    with pytest.raises(ValueError, match="trivial_dims"):
        RotationRepresentationPredictor(trivial_dims=-1)


# --- online probes --------------------------------------------------------------------------------


def test_r2_score_is_the_uniform_average_over_columns():
    rng = np.random.default_rng(0)
    target, predicted = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    expected = np.mean(
        [
            1
            - ((target[:, j] - predicted[:, j]) ** 2).sum()
            / ((target[:, j] - target[:, j].mean()) ** 2).sum()
            for j in range(4)
        ]
    )
    assert np.isclose(r2_score(torch.tensor(predicted), torch.tensor(target)).item(), expected)


def test_r2_pooled_score_uses_one_mean_of_all_target_values():
    rng = np.random.default_rng(1)
    target, predicted = rng.normal(size=(20, 4)) + np.arange(4), rng.normal(size=(20, 4))
    expected = 1 - ((target - predicted) ** 2).sum() / ((target - target.mean()) ** 2).sum()
    assert np.isclose(r2_pooled_score(torch.tensor(predicted), torch.tensor(target)).item(), expected)
    means = torch.tensor(target.mean(0)).expand(20, 4)  # each column's mean: 0 per column, > 0 pooled
    assert np.isclose(r2_score(means, torch.tensor(target)).item(), 0.0)
    assert r2_pooled_score(means, torch.tensor(target)).item() > 0.5


def test_probes_report_each_part_and_do_not_backprop_into_representations():
    torch.manual_seed(0)
    parts = {"full": slice(0, 8), "inv": slice(0, 4), "equi": slice(4, 8)}
    probes = OnlineProbes(parts, num_classes=3)
    rep1, rep2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    action, labels = torch.randn(6, 4), torch.randint(0, 3, (6,))
    loss, stats = probes(rep1, rep2, action, labels)
    loss.backward()
    assert rep1.grad is None and rep2.grad is None
    assert all(p.grad is not None for p in probes.parameters())
    for suffix in ("", "_inv", "_equi"):
        assert {f"probe_rotation_r2_comp{suffix}", f"probe_rotation_r2{suffix}"} <= set(stats)
        assert {f"probe_top1{suffix}", f"probe_rotation_r2{suffix}", f"probe_cross_entropy{suffix}"} <= set(
            stats
        )
    logits = probes.classifiers["full"](torch.cat([rep1, rep2]).detach())
    expected_top1 = (logits.argmax(1) == torch.cat([labels, labels])).float().mean()
    assert torch.isclose(stats["probe_top1"], expected_top1)
    assert probes.rotation_regressors["equi"][0].in_features == 8
    expected_loss = sum(
        np_probe_loss(probes, name, part, rep1, rep2, action, labels) for name, part in parts.items()
    )
    assert np.isclose(stats["probe_loss"].item(), expected_loss, rtol=1e-5)
    assert torch.equal(stats["probe_loss"], loss.detach())


def numpy_parameters(module):
    return [parameter.detach().double().numpy() for parameter in module.parameters()]


def np_probe_loss(probes, name, part, rep1, rep2, action, labels):
    """One part's probe loss from the probe weights: log-softmax cross-entropy of the linear classifier
    over both views + MSE of the ReLU MLP regressing the quaternion from [rep1, rep2]."""
    rep1, rep2 = rep1.detach().double().numpy()[:, part], rep2.detach().double().numpy()[:, part]
    weight, bias = numpy_parameters(probes.classifiers[name])
    logits = np.concatenate([rep1, rep2]) @ weight.T + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    both_labels = np.concatenate([labels.numpy(), labels.numpy()])
    cross_entropy = -log_softmax[np.arange(len(both_labels)), both_labels].mean()
    w1, b1, w2, b2, w3, b3 = numpy_parameters(probes.rotation_regressors[name])
    hidden = np.maximum(0.0, np.concatenate([rep1, rep2], axis=1) @ w1.T + b1)
    predicted = np.maximum(0.0, hidden @ w2.T + b2) @ w3.T + b3
    return cross_entropy + np.mean((predicted - action.numpy()[:, :4]) ** 2)


def test_probes_without_classes_refuse_labels():
    probes = OnlineProbes({"full": slice(0, 8)}, num_classes=None)
    with pytest.raises(ValueError, match="num_classes"):
        probes(torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 4), torch.zeros(2, dtype=torch.long))
