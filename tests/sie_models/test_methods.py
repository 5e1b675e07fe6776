import json

import pytest
import torch
from test_method_objectives import run_capturing

from sie_models import (
    ACTION_DIMS,
    MethodOptionError,
    UnknownMethodError,
    build_method,
    check_method_options,
    describe_method,
    list_methods,
    method_defaults,
)

torch.set_num_threads(1)

ALL_METHODS = [
    "vicreg",
    "simclr",
    "sie",
    "sie-no-predvar",
    "sie-equi-only",
    "sie-rotcolor",
    "sie-mlp",
    "vicreg-partial",
    "simclr-augself",
    "simclr-augself-rotcolor",
    "equimod-simclr",
    "equimod-vicreg",
    "simclr-equi-only",
    "sen",
]
PREDICTOR_METHODS = {
    "sie",
    "sie-no-predvar",
    "sie-equi-only",
    "sie-rotcolor",
    "sie-mlp",
    "equimod-simclr",
    "equimod-vicreg",
    "simclr-equi-only",
    "sen",
}
TINY = {"image_size": 32, "width": 4, "num_classes": 5, "projector": "32-32-32"}


def tiny(name, **overrides):
    torch.manual_seed(0)
    return build_method(name, **{**TINY, **overrides})


def batch(method, size=8, image_size=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    views = torch.randn(2, size, 3, image_size, image_size, generator=generator)
    action = torch.randn(size, method.action_dim, generator=generator)
    labels = torch.randint(0, 5, (size,), generator=generator)
    return views[0], views[1], action, labels


# --- registry -------------------------------------------------------------------------------------


def test_every_method_is_registered():
    assert list_methods() == ALL_METHODS


def test_paper_defaults():
    sie = method_defaults("sie")
    assert (sie["sim_coeff"], sie["std_coeff"], sie["cov_coeff"], sie["equi_factor"]) == (
        10.0,
        10.0,
        1.0,
        0.45,
    )
    assert sie["projector"] == "2048-2048-2048" and sie["width"] == 64 and sie["equivariant_fraction"] == 0.5
    assert (
        sie["predictor"] == "hypernetwork"
        and sie["hypernetwork"] == "linear"
        and not sie["hypernetwork_bias"]
    )
    assert method_defaults("sie-no-predvar")["predictor_variance"] is False
    assert method_defaults("sie-rotcolor")["action"] == "rotation+color"
    assert method_defaults("sie-mlp")["predictor"] == "mlp"
    assert method_defaults("simclr")["temperature"] == 0.1
    method_defaults("sie")["sim_coeff"] = 0.0  # a copy: the registry is unchanged
    assert method_defaults("sie")["sim_coeff"] == 10.0


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UnknownMethodError) as error:
        build_method("sie-plus")
    for name in ALL_METHODS:
        assert name in str(error.value)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(MethodOptionError, match=r"no option temperature.*sim_coeff"):
        build_method("vicreg", temperature=0.5)


#: (method, option, value, what the message says is expected): one of each way an option can be wrong.
BAD_OPTIONS = [
    ("sie", "equi_factor", "abc", r"equi_factor=\"abc\" .*expected a number from 0 to 1e\+06"),
    ("sie", "projector", [1, 2], r"projector=\[1, 2\] .*expected a projector spec"),
    ("sie", "projector", "64-x-64", r"projector=\"64-x-64\" .*integers from 1 to 65536 joined by '-'"),
    ("sie", "projector", "64--64", r"projector=\"64--64\" .*integers from 1 to 65536 joined by '-'"),
    ("vicreg", "projector", 64, r"projector=64 .*expected a projector spec"),
    ("sie", "sim_coeff", None, r"sim_coeff=null .*expected a number from 0 to 1e\+06"),
    ("vicreg", "std_coeff", -1.0, r"std_coeff=-1.0 .*expected a number from 0 to 1e\+06"),
    ("vicreg", "cov_coeff", float("inf"), r"cov_coeff=Infinity .*expected a number from 0 to 1e\+06"),
    ("sie", "equi_factor", float("nan"), r"equi_factor=NaN .*expected a number from 0 to 1e\+06"),
    ("sie", "equi_factor", True, r"equi_factor=true .*expected a number from 0 to 1e\+06"),
    ("sen", "sigma", 0, r"sigma=0 .*expected a number from 1e-06 to 1e\+06"),
    ("sen", "hinge", -0.5, r"hinge=-0.5 .*expected a number from 1e-06 to 1e\+06"),
    ("simclr", "temperature", 0, r"temperature=0 .*expected a number from 1e-06 to 1e\+06"),
    ("simclr", "temperature", 1e-300, r"temperature=1e-300 .*expected a number from 1e-06"),  # NaN loss
    ("sen", "sigma", 1e-300, r"sigma=1e-300 .*expected a number from 1e-06"),  # 1 / sigma^2 overflowed
    ("sie", "equi_factor", 1e308, r"equi_factor=1e\+308 .*expected a number from 0 to 1e\+06"),  # inf loss
    ("sie", "projector", "64-99999999999999999999", r"projector=.*integers from 1 to 65536"),
    ("simclr", "temperature", "0.1", r"temperature=\"0.1\" .*expected a number from 1e-06 to 1e\+06"),
    ("simclr-augself", "augself_weight", -1, r"augself_weight=-1 .*expected a number from 0 to 1e\+06"),
    ("equimod-vicreg", "equi_weight", [], r"equi_weight=\[\] .*expected a number from 0 to 1e\+06"),
    ("sie", "predictor_variance", "maybe", r"predictor_variance=\"maybe\" .*expected true or false"),
    ("sie", "predictor_variance", 1, r"predictor_variance=1 .*expected true or false"),
    ("sie", "hypernetwork_bias", None, r"hypernetwork_bias=null .*expected true or false"),
    ("sie", "predictor_layers", 2.0, r"predictor_layers=2.0 .*expected an integer >= 1"),
    ("sie", "predictor_layers", True, r"predictor_layers=true .*expected an integer >= 1"),
    ("sie-mlp", "predictor_layers", 0, r"predictor_layers=0 .*expected an integer >= 1"),
    ("sie", "predictor", "transformer", r"predictor=\"transformer\" .*'hypernetwork' or 'mlp'"),
    ("sie", "hypernetwork", 1, r"hypernetwork=1 .*'linear' or 'deep'"),
    ("vicreg-partial", "equivariant_fraction", 0, r"equivariant_fraction=0 .*a number in \(0, 1\]"),
    ("sie", "equivariant_fraction", 1.5, r"equivariant_fraction=1.5 .*a number in \(0, 1\]"),
    ("sie", "action", "translation", r"action=\"translation\" .*'rotation' or 'rotation\+color'"),
    ("sie", "stem", None, r"stem=null .*'auto', 'imagenet' or 'small'"),
    ("sie", "width", 0, r"width=0 .*an integer >= 1"),
    ("sie", "image_size", "32", r"image_size=\"32\" .*an integer >= 1"),
    ("sie", "num_classes", 0, r"num_classes=0 .*null or an integer >= 1"),
    ("sie", "num_classes", 2.5, r"num_classes=2.5 .*null or an integer >= 1"),
]


@pytest.mark.parametrize(("name", "option", "value", "expected"), BAD_OPTIONS)
def test_an_option_of_the_wrong_type_or_range_is_refused_before_building(name, option, value, expected):
    with pytest.raises(MethodOptionError, match=rf"^method '{name}': option {expected}") as error:
        build_method(name, **{**TINY, option: value})
    assert "\n" not in str(error.value)
    with pytest.raises(MethodOptionError, match=expected):
        check_method_options(name, {option: value})


def test_partial_invariance_needs_an_invariant_dimension():
    """A fraction of 1 left the invariance term a mean over no dimension: a NaN loss blamed on the lr."""
    with pytest.raises(ValueError, match=r"equivariant_fraction 1 leaves no invariant embedding dimension"):
        build_method("vicreg-partial", **{**TINY, "equivariant_fraction": 1})


#: Values of every type that must still be accepted, ints standing for floats included.
GOOD_OPTIONS = [
    ("sie", {"equi_factor": 0, "sim_coeff": 25, "std_coeff": 2.5, "cov_coeff": 0.0}),
    ("sie", {"predictor_variance": False, "hypernetwork_bias": True, "predictor_bias": True}),
    ("sie", {"predictor": "mlp", "predictor_layers": 1, "hypernetwork": "linear", "num_classes": None}),
    ("sie-mlp", {"predictor": "hypernetwork", "hypernetwork": "deep", "predictor_layers": 2}),
    ("sie", {"equivariant_fraction": 1, "stem": "small", "action": "rotation+color", "projector": "16"}),
    ("simclr", {"temperature": 1, "projector": "8-016"}),
    ("sen", {"sigma": 1e-3, "hinge": 2}),
    ("simclr-augself", {"augself_weight": 0}),
    ("equimod-simclr", {"equi_weight": 0.5, "temperature": 0.2}),
]


@pytest.mark.parametrize(("name", "options"), GOOD_OPTIONS)
def test_options_of_the_right_type_and_range_are_accepted(name, options):
    check_method_options(name, options)
    method = tiny(name, **options)
    assert {key: method.config[key] for key in options} == options
    view1, view2, action, _ = batch(method, size=4, image_size=TINY["image_size"])
    assert torch.isfinite(method(view1, view2, action).loss)


@pytest.mark.parametrize(
    ("name", "options", "unused", "kind"),
    [
        ("sie", {"predictor_layers": 3}, "predictor_layers", "mlp"),
        (
            "sie",
            {"predictor": "mlp", "hypernetwork": "deep", "predictor_bias": True},
            "hypernetwork, predictor_bias",
            "hypernetwork",
        ),
        ("sie-mlp", {"hypernetwork_bias": True}, "hypernetwork_bias", "hypernetwork"),
    ],
)
def test_an_option_of_the_other_predictor_is_refused(name, options, unused, kind):
    """The predictor that is not built would ignore it: the run would not be the one asked for."""
    with pytest.raises(MethodOptionError, match=rf"option {unused} applies to predictor={kind}, not"):
        check_method_options(name, options)
    method = tiny(name, **options)  # a run saved with it (when it was accepted) still loads
    assert {key: method.config[key] for key in options} == options


def test_every_default_passes_its_own_check():
    for name in ALL_METHODS:
        check_method_options(name, method_defaults(name))


def test_a_fraction_that_fits_the_rules_but_not_the_network_is_still_a_clear_error():
    with pytest.raises(ValueError, match="leaves an empty part of 32 dims"):
        tiny("sie", equivariant_fraction=0.001)


def test_describe_every_method_as_json():
    for name in ALL_METHODS:
        info = json.loads(json.dumps(describe_method(name)))
        assert info["defaults"] == method_defaults(name)
        assert info["has_predictor"] == (name in PREDICTOR_METHODS)
    assert describe_method("sie")["split"] == "256+256"
    assert describe_method("sie")["projectors"] == "inv 1024-1024-1024, equi 1024-1024-1024"
    assert describe_method("sie-rotcolor")["action"] == "rotation+color (6)"


# --- the paper's architecture at full width -------------------------------------------------------


def test_sie_at_width_64_splits_256_plus_256_with_proportional_projectors():
    torch.manual_seed(0)
    method = build_method("sie")
    assert method.representation_dim == 512
    assert method.parts == {"full": slice(0, 512), "inv": slice(0, 256), "equi": slice(256, 512)}
    assert [m.out_features for m in method.projector_inv if isinstance(m, torch.nn.Linear)] == [1024] * 3
    assert [m.out_features for m in method.projector_equi if isinstance(m, torch.nn.Linear)] == [1024] * 3
    assert method.projector_inv[0].in_features == method.projector_equi[0].in_features == 256
    (hypernetwork,) = method.predictor.hypernetwork
    assert (hypernetwork.in_features, hypernetwork.out_features, hypernetwork.bias) == (4, 1024 * 1024, None)


# --- interface hooks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_evaluation_hooks(name):
    method = tiny(name).eval()
    view1, _, action, _ = batch(method, size=4)
    assert method.action_dim == ACTION_DIMS[method_defaults(name)["action"]]
    assert method.config == {**method_defaults(name), **TINY} and method.name == name
    rebuilt = build_method(method.name, **method.config)
    assert rebuilt.state_dict().keys() == method.state_dict().keys()
    with torch.no_grad():
        representation = method.encode(view1)
        assert representation.shape == (4, method.representation_dim) == (4, 32)
        assert method.parts["full"] == slice(0, 32)
        assert method.has_predictor == (name in PREDICTOR_METHODS)
        if method.has_predictor:
            embedding = method.embed_equivariant(representation)
            assert method.predict(embedding, action).shape == embedding.shape
        else:
            with pytest.raises(RuntimeError, match="no predictor"):
                method.embed_equivariant(representation)
    split = name in {"sie", "sie-no-predvar", "sie-rotcolor", "sie-mlp"}
    assert set(method.parts) == ({"full", "inv", "equi"} if split else {"full"})


def test_bad_inputs_get_clear_errors():
    method = tiny("sie")
    view1, view2, action, labels = batch(method, size=4)
    with pytest.raises(ValueError, match=r"action must have shape \(4, 4\)"):
        method(view1, view2, action[:, :3])
    with pytest.raises(ValueError, match="num_classes"):
        tiny("sie", num_classes=None)(view1, view2, action, labels)
    with pytest.raises(ValueError, match="rotation"):
        tiny("sen", action="rotation+color")
    with pytest.raises(ValueError, match="action=\"translation\" is not valid; expected 'rotation' or"):
        tiny("sie", action="translation")


# --- training -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_method_trains_a_few_steps(name):
    method = tiny(name)
    optimiser = torch.optim.Adam(method.parameters(), lr=1e-3)
    view1, view2, action, labels = batch(method)
    objectives = []
    for _ in range(3):
        out = method(view1, view2, action, labels)
        assert torch.isfinite(out.loss) and out.loss.requires_grad
        assert all(torch.isfinite(value) and not value.requires_grad for value in out.stats.values())
        assert {"loss", "objective", "probe_top1", "probe_rotation_r2"} <= set(out.stats)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        objectives.append(out.stats["objective"].item())
    assert len(set(objectives)) == 3
    assert out.stats["loss"] == out.loss.detach()


def test_stats_without_labels_have_no_probes():
    method = tiny("vicreg")
    view1, view2, action, _ = batch(method)
    out = method(view1, view2, action)
    assert torch.equal(out.stats["loss"], out.stats["objective"])
    assert not any(key.startswith("probe") for key in out.stats)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_runs_under_mixed_precision_with_float32_objective(name):
    """The AMP path of training (autocast; bfloat16 here, as the CPU has it): every term of the objective
    is computed in float32 (a float32 total alone proves nothing: float32 terms promote it), the objective
    equals the criterion run outside autocast on the embeddings cast to float32, and every gradient is
    finite."""
    method = tiny(name)
    view1, view2, action, labels = batch(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, embeddings = run_capturing(method, (view1, view2, action, labels))
    terms = {key: value for key, value in out.stats.items() if not key.startswith("probe")}
    assert {key: value.dtype for key, value in terms.items()} == dict.fromkeys(terms, torch.float32)
    assert torch.isfinite(out.loss)
    full_precision = {key: value.detach().float() for key, value in embeddings.items()}
    with torch.no_grad():
        expected, _ = method.criterion(full_precision, action.float())
    torch.testing.assert_close(out.stats["objective"], expected, rtol=1e-6, atol=1e-6)
    out.loss.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)


# --- gradient flow --------------------------------------------------------------------------------


def grads_of(module):
    return [p.grad for p in module.parameters()]


def is_zero(grads):
    return all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_sie_terms_reach_only_their_own_heads():
    method = tiny("sie")
    view1, view2, action, _ = batch(method)
    rep1, rep2 = method.encode(view1), method.encode(view2)
    _, terms = method.criterion(method.embed(rep1, rep2, action), action)

    terms["equivariance"].backward(retain_graph=True)
    assert is_zero(grads_of(method.projector_inv))
    assert not is_zero(grads_of(method.projector_equi)) and not is_zero(grads_of(method.predictor))

    method.zero_grad(set_to_none=True)
    terms["invariance"].backward(retain_graph=True)
    assert is_zero(grads_of(method.projector_equi)) and is_zero(grads_of(method.predictor))
    assert not is_zero(grads_of(method.projector_inv))
    # The invariance term shapes only the invariant part of the representation.
    rep_grad = torch.autograd.grad(terms["invariance"], rep1, retain_graph=True)[0]
    assert torch.count_nonzero(rep_grad[:, method.parts["equi"]]) == 0
    assert torch.count_nonzero(rep_grad[:, method.parts["inv"]]) > 0


def test_probes_do_not_backprop_into_the_backbone():
    method = tiny("sie")
    view1, view2, action, labels = batch(method)
    method(view1, view2, action).loss.backward()
    without_labels = [p.grad.clone() for p in method.backbone.parameters()]
    assert is_zero(grads_of(method.probes))
    method.zero_grad(set_to_none=True)
    method(view1, view2, action, labels).loss.backward()
    with_labels = [p.grad for p in method.backbone.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(without_labels, with_labels, strict=True))
    assert not is_zero(grads_of(method.probes))


def test_augself_regressor_shapes_the_backbone():
    method = tiny("simclr-augself")
    view1, view2, action, _ = batch(method)
    rep1, rep2 = method.encode(view1), method.encode(view2)
    _, terms = method.criterion(method.embed(rep1, rep2, action), action)
    rep_grad = torch.autograd.grad(terms["augself"], rep1)[0]
    assert torch.count_nonzero(rep_grad) > 0


def test_sen_leaves_the_invariant_share_of_the_embedding_unrotated():
    """equivariant_fraction 0.25 of a 24-wide embedding: 18 trivial dims, then 6 (two 3-vectors) turned."""
    method = tiny("sen", projector="24-24-24", equivariant_fraction=0.25)
    assert method.predictor.trivial_dims == 18
    layout = type(method).layout({"projector": "24-24-24", "equivariant_fraction": 0.25}, 32)
    assert layout["split"] == "embedding 18 trivial + 6 rotated"
