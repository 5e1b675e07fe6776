"""Probes on constructed features: features that hold the answer score near perfect, features that hold
nothing score chance, and the same settings give the same numbers."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from benchmark.evaluate import ProbeSettings, classification_probe, colour_probe, draw_pairs, rotation_probe
from benchmark.evaluate import probes as probes_module
from benchmark.evaluate.metrics import r2_pooled
from benchmark.evaluate.probes import classification_scores, colour_targets, rotation_targets
from render import spec

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ProbeSettings(epochs=40, batch_size=64, hidden=256, val_pairs=5)


def _latents(seed, objects, views=50):
    rng = np.random.default_rng(seed)
    return rng.uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(objects, views, spec.LATENT_DIM))


def _quaternion_features(latents):
    """Each view's own rotation as a quaternion: the relative rotation is a function of the pair."""
    quaternions = Rotation.from_euler("xyz", latents[..., spec.ROTATION].reshape(-1, 3)).as_quat()
    return torch.tensor(quaternions.reshape(*latents.shape[:2], 4), dtype=torch.float32)


def _noise(seed, objects, views=50, dim=16):
    return torch.randn(objects, views, dim, generator=torch.Generator().manual_seed(seed))


def _class_features(labels, classes, views, seed):
    rng = np.random.default_rng(seed)
    one_hot = 5 * np.eye(classes)[labels][:, None, :]
    features = one_hot + 0.05 * rng.standard_normal((len(labels), views, classes))
    return torch.tensor(features, dtype=torch.float32)


def test_classification_probe_of_label_features_is_perfect_and_of_noise_is_chance():
    rng = np.random.default_rng(0)
    train_labels, val_labels = rng.integers(4, size=80), rng.integers(4, size=60)
    settings = ProbeSettings(epochs=100, batch_size=16)
    perfect = classification_probe(
        _class_features(train_labels, 4, 10, 1),
        train_labels,
        _class_features(val_labels, 4, 10, 2),
        val_labels,
        4,
        settings,
    )
    assert perfect == {"top1": 1.0, "top5": 1.0, "mean_class_acc": 1.0}
    noise = classification_probe(_noise(3, 80, 10), train_labels, _noise(4, 60, 10), val_labels, 4, settings)
    assert noise["top1"] == pytest.approx(0.25, abs=0.08)
    assert noise["mean_class_acc"] == pytest.approx(0.25, abs=0.08)


def test_rotation_probe_of_rotation_features_is_near_perfect_and_of_noise_is_chance():
    train, val = _latents(10, 200), _latents(11, 40)
    perfect = rotation_probe(_quaternion_features(train), train, _quaternion_features(val), val, FAST)
    assert perfect["r2"] > 0.95 and perfect["r2_components"] > 0.95 and perfect["angle_deg"] < 15
    noise = rotation_probe(_noise(12, 200), train, _noise(13, 40), val, FAST)
    assert noise["r2_components"] == pytest.approx(0.0, abs=0.1)
    assert noise["angle_deg"] > 60
    # The pooled (published) R^2 of a head that knows nothing is that of the train mean of each component.
    objects, first, second = draw_pairs(np.random.default_rng(0), 40, 50, FAST.val_pairs)
    target = rotation_targets(val, objects, first, second)
    train_mean = rotation_targets(train, *draw_pairs(np.random.default_rng(1), 200, 50, 20)).mean(axis=0)
    assert noise["r2"] == pytest.approx(r2_pooled(np.broadcast_to(train_mean, target.shape), target), abs=0.1)


def test_colour_probe_of_hue_features_is_near_perfect_and_of_noise_is_chance():
    train, val = _latents(20, 200), _latents(21, 40)
    hues = [spec.FLOOR_HUE, spec.SPOT_HUE]
    perfect = colour_probe(
        torch.tensor(train[..., hues], dtype=torch.float32),
        train,
        torch.tensor(val[..., hues], dtype=torch.float32),
        val,
        FAST,
    )
    assert min(perfect.values()) > 0.98
    noise = colour_probe(_noise(22, 200), train, _noise(23, 40), val, FAST)
    for value in noise.values():
        assert value == pytest.approx(0.0, abs=0.1)


def test_samples_per_object_feed_a_probe_of_few_objects_enough_steps():
    """With one pair per object and epoch, 12 objects make one step per epoch and the head learns little;
    50 pairs per object make the same epochs learn the rotation."""
    train, val = _latents(40, 12), _latents(41, 40)
    features, val_features = _quaternion_features(train), _quaternion_features(val)
    settings = ProbeSettings(epochs=15, batch_size=64, hidden=256, val_pairs=5)
    starved = rotation_probe(features, train, val_features, val, settings)
    fed = rotation_probe(
        features, train, val_features, val, dataclasses.replace(settings, samples_per_object=50)
    )
    assert starved["r2_components"] < 0.5 < 0.9 < fed["r2_components"]
    labels = np.arange(12) % 4
    class_features = _class_features(labels, 4, 50, 42)
    val_labels = np.arange(40) % 4
    val_class_features = _class_features(val_labels, 4, 50, 43)
    top1 = [
        classification_probe(
            class_features,
            labels,
            val_class_features,
            val_labels,
            4,
            ProbeSettings(epochs=4, batch_size=64, lr=1e-2, samples_per_object=samples),
        )["top1"]
        for samples in (1, 50)
    ]
    assert top1[0] < 0.9 and top1[1] == 1.0
    assert rotation_probe(features, train, val_features, val, settings) == starved  # 1 is the default


def test_probes_are_reproducible_and_leave_the_global_generator_alone():
    train, val = _latents(30, 30, views=6), _latents(31, 10, views=6)
    settings = ProbeSettings(epochs=3, batch_size=8, hidden=32, val_pairs=2, seed=7)
    features, val_features = _noise(32, 30, 6), _noise(33, 10, 6)
    state = torch.get_rng_state()
    first = rotation_probe(features, train, val_features, val, settings)
    assert torch.equal(torch.get_rng_state(), state)
    assert rotation_probe(features, train, val_features, val, settings) == first
    other_seed = ProbeSettings(epochs=3, batch_size=8, hidden=32, val_pairs=2, seed=8)
    assert rotation_probe(features, train, val_features, val, other_seed) != first


def test_classification_scores_of_twelve_classes():
    """Top-5 is the label among the 5 highest logits, not the highest one (with 12 classes they differ)."""
    labels = np.arange(12)
    logits = np.tile(np.arange(12, 0, -1, dtype=np.float64), (12, 1))  # class 0 best, then 1, 2, ...
    scores = classification_scores(logits, labels)
    assert scores == {"top1": 1 / 12, "top5": 5 / 12, "mean_class_acc": 1 / 12}


def test_colour_probe_names_each_hue_by_its_own_score():
    """Features that hold the floor hue alone: the floor's R^2 near 1, the spot's near 0."""
    train, val = _latents(24, 200), _latents(25, 40)
    floor_only = colour_probe(
        torch.tensor(train[..., [spec.FLOOR_HUE]], dtype=torch.float32),
        train,
        torch.tensor(val[..., [spec.FLOOR_HUE]], dtype=torch.float32),
        val,
        FAST,
    )
    assert floor_only["r2_floor"] > 0.95 and floor_only["r2_spot"] == pytest.approx(0.0, abs=0.1)


def test_pair_targets_are_the_second_view_relative_to_the_first():
    latents = _latents(26, 2, views=3)
    objects, first, second = np.array([1, 0]), np.array([2, 0]), np.array([0, 1])
    ends = Rotation.from_euler("xyz", latents[objects, second][:, spec.ROTATION])
    starts = Rotation.from_euler("xyz", latents[objects, first][:, spec.ROTATION])
    relative = (starts.inv() * ends).as_quat()
    relative *= np.sign(relative[:, 3:])  # SciPy's sign: w >= 0
    np.testing.assert_allclose(rotation_targets(latents, objects, first, second), relative, atol=1e-6)
    hues = latents[objects, second][:, list(spec.COLOUR)] - latents[objects, first][:, list(spec.COLOUR)]
    np.testing.assert_allclose(colour_targets(latents, objects, first, second), hues, atol=1e-6)


def test_every_probe_trains_its_epochs_on_views_drawn_anew_each_epoch(monkeypatch):
    """on_epoch is called once per epoch; the classification views and the training pairs differ between
    epochs, the validation pairs and the head's initial weights between seeds."""
    train, val = _latents(27, 8, views=6), _latents(28, 4, views=6)
    features, val_features = _noise(29, 8, 6), _noise(30, 4, 6)
    settings = ProbeSettings(epochs=3, batch_size=64, hidden=8, val_pairs=2)
    labels, val_labels = np.arange(8) % 2, np.arange(4) % 2
    for probe in (
        lambda **kw: classification_probe(features, labels, val_features, val_labels, 2, settings, **kw),
        lambda **kw: rotation_probe(features, train, val_features, val, settings, **kw),
        lambda **kw: colour_probe(features, train, val_features, val, settings, **kw),
    ):
        epochs = []
        probe(on_epoch=lambda epochs=epochs: epochs.append(1))
        assert len(epochs) == 3

    drawn = []
    real_rng = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed: _RecordingDraws(real_rng(seed), drawn))
    classification_probe(features, labels, val_features, val_labels, 2, settings)
    assert len(drawn) == 3 and not np.array_equal(drawn[0], drawn[1])  # one draw of views per epoch
    drawn.clear()
    rotation_probe(features, train, val_features, val, settings)
    firsts = drawn[0::2]  # draw_pairs draws the first views, then the offsets of the second
    assert len(firsts) == 4 and not np.array_equal(firsts[0], firsts[1])  # 3 epochs, then validation
    drawn.clear()
    rotation_probe(features, train, val_features, val, dataclasses.replace(settings, seed=1))
    assert not np.array_equal(drawn[-2], firsts[-1])  # the validation pairs follow the seed
    monkeypatch.undo()
    weights = []
    monkeypatch.setattr(probes_module, "pair_head", _recording_head(weights))
    for seed in (0, 0, 1):
        rotation_probe(features, train, val_features, val, dataclasses.replace(settings, epochs=1, seed=seed))
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


class _RecordingDraws:
    """A NumPy generator that records every array of integers it draws."""

    def __init__(self, generator, drawn):
        self.generator, self.drawn = generator, drawn

    def integers(self, *arguments, **options):
        values = self.generator.integers(*arguments, **options)
        self.drawn.append(np.array(values))
        return values

    def __getattr__(self, name):
        return getattr(self.generator, name)


def _recording_head(weights):
    """pair_head, recording each head's initial first-layer weights."""
    real = probes_module.pair_head

    def build(*arguments):
        head = real(*arguments)
        weights.append(head[0].weight.detach().clone())
        return head

    return build


def test_draw_pairs_gives_distinct_views_uniformly():
    objects, first, second = draw_pairs(np.random.default_rng(0), 4000, 5, 3)
    assert len(objects) == 12_000 and (np.bincount(objects) == 3).all()
    assert (first != second).all()
    counts = np.zeros((5, 5))
    np.add.at(counts, (first, second), 1)
    off_diagonal = counts[~np.eye(5, dtype=bool)]
    assert off_diagonal.min() > 0.85 * 600 and off_diagonal.max() < 1.15 * 600
    with pytest.raises(ValueError, match="at least 2 views"):
        draw_pairs(np.random.default_rng(0), 3, 1, 1)


def test_probe_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        ProbeSettings(epochs=0)
    with pytest.raises(ValueError, match="samples_per_object must be at least 1"):
        ProbeSettings(epochs=1, samples_per_object=0)
    with pytest.raises(
        ValueError, match=r"lr must be positive and weight decay not negative, both finite, got -0\.001"
    ):
        ProbeSettings(epochs=1, lr=-1e-3)
    with pytest.raises(ValueError, match=r"got 0\.001 and -1"):
        ProbeSettings(epochs=1, weight_decay=-1)
    for lr, weight_decay in ((float("inf"), 0.0), (float("nan"), 0.0), (1e-3, float("inf"))):
        with pytest.raises(ValueError, match="both finite"):
            ProbeSettings(epochs=1, lr=lr, weight_decay=weight_decay)
