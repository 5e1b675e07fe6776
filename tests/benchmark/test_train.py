"""`3die train` in this process on the CPU: run folder, logs, load_trained, resume checks, stop conditions."""

import json
import multiprocessing
import os
import shutil
import signal

import pytest
import torch
from click.testing import CliRunner
from synthetic_data import write_dataset

from benchmark.cli import main
from benchmark.data import open_dataset, pack_dataset
from benchmark.data.validate import subset
from benchmark.train import (
    ConfigError,
    NonFiniteLossError,
    TrainingError,
    load_trained,
    parse_method_options,
    presets,
    read_checkpoint,
    resolve_config,
    save_checkpoint,
    train,
)
from benchmark.train.checkpoint import LoadedCheckpoint
from benchmark.train.distributed import start_processes
from benchmark.train.loop import (
    STOP_SIGNALS,
    StopSignals,
    Trainer,
    build_configured_method,
    check_resumable,
    check_same_checkpoint,
    cuda_rng_states,
    dataset_fingerprint,
    per_process_batch,
    restore_cuda_rng,
    seed_everything,
)
from render import spec
from sie_models import list_methods, losses

#: 16 px images, width 4 (tiny preset), 9 training objects in batches of 4: 2 steps per epoch.
TINY = ["--preset", "tiny", "--image-size", "16", "--batch-size", "4", "--no-progress"]


def _train(data, out, *extra: str):
    arguments = ["train", "--method", "sie", "--data", str(data), "--out", str(out), *TINY, *extra]
    return CliRunner().invoke(main, arguments)


@pytest.fixture(scope="module")
def tiny_run(synthetic_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "sie"
    result = _train(synthetic_dataset.root, run, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert f"{run}: 2 epochs, 4 steps" in result.output
    return run


def test_run_folder_holds_config_checkpoints_and_tensorboard_logs(tiny_run, synthetic_dataset):
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["method"] == "sie" and config["preset"] == "tiny" and config["epochs"] == 2
    assert config["method_config"]["width"] == 4 and config["method_config"]["image_size"] == 16
    assert config["method_config"]["projector"] == "64-64-64" and config["method_config"]["num_classes"] == 3
    assert config["data"] == str(synthetic_dataset.root.resolve()) and config["device"] == "cpu"
    assert config["amp"] is False and config["world_size"] == 1 and config["steps_per_epoch"] == 2
    assert config["dataset"]["objects"] == 9 and config["dataset"]["views"] == 50
    last = read_checkpoint(tiny_run / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (2, 0, 4)
    assert read_checkpoint(tiny_run / "checkpoints" / "previous.pt")["epoch"] == 1
    assert last["config"] == config

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/invariance", "train/equivariance", "train/variance", "train/covariance"}
    expected |= {"train/probe_top1", "train/probe_rotation_r2", "throughput/images_per_s", "optim/lr"}
    assert expected <= tags
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert events.Scalars("optim/lr")[0].value == pytest.approx(1e-3)


def test_log_every_sets_the_steps_between_tensorboard_entries(synthetic_dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train(synthetic_dataset.root, tmp_path / "run", "--epochs", "2", "--log-every", "3")
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for tag in ("train/loss", "train/probe_top1", "throughput/images_per_s", "optim/lr"):
        assert [event.step for event in events.Scalars(tag)] == [3], tag  # of steps 1..4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["log_every"] == 3


def test_load_trained_rebuilds_the_checkpointed_method(tiny_run):
    method, config = load_trained(tiny_run)
    assert method.name == "sie" and not method.training
    assert config["checkpoint"]["epochs_done"] == 2 and config["checkpoint"]["complete"]
    saved = read_checkpoint(tiny_run / "checkpoints" / "last.pt")["model"]
    for name, tensor in method.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert method.encode(torch.zeros(2, 3, 16, 16)).shape == (2, method.representation_dim)


def test_rerun_of_a_finished_run_trains_nothing_and_more_epochs_continue(
    tiny_run, synthetic_dataset, tmp_path
):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    made = (run / "config.json").read_bytes()
    again = _train(synthetic_dataset.root, run, "--epochs", "2", "--workers", "1")
    assert again.exit_code == 0 and "already trained for 2 epochs" in again.output
    assert (run / "config.json").read_bytes() == made, "a finished run's config (its out, code version) stays"
    (run / "config.json").write_text('{"epochs": 1}')  # stale: a kill between the last save's two writes
    assert _train(synthetic_dataset.root, run, "--epochs", "2").exit_code == 0
    assert (
        json.loads((run / "config.json").read_text())
        == read_checkpoint(run / "checkpoints" / "last.pt")["config"]
    )
    assert "resuming" not in again.output  # a finished run is not resumed "at epoch 3"
    fewer = _train(synthetic_dataset.root, run, "--epochs", "1")  # its scores would be of 2 epochs
    assert fewer.exit_code == 1 and fewer.output.strip() == (
        f"Error: {run}: the checkpoint holds 2 epochs, more than the --epochs 1 asked; give --epochs 2 or "
        "more to use it, or another --out"
    )
    assert json.loads((run / "config.json").read_text())["epochs"] == 2, "the run's config is untouched"
    longer = _train(synthetic_dataset.root, run, "--epochs", "3")
    assert longer.exit_code == 0, longer.output
    assert "resuming from last.pt at epoch 3, step 0" in longer.output
    assert read_checkpoint(run / "checkpoints" / "last.pt")["global_step"] == 6


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--width", "8"], "width: 4 -> 8"),
        (["--option", "equi_factor=0.5"], "equi_factor: 0.45 -> 0.5"),
        (["--lr", "0.01"], "lr: 0.001 -> 0.01"),
        (["--weight-decay", "0.5"], "weight_decay: 1e-06 -> 0.5"),
        (["--seed", "1"], "seed: 0 -> 1"),
    ],
)
def test_resume_with_other_settings_is_refused(tiny_run, synthetic_dataset, extra, named):
    result = _train(synthetic_dataset.root, tiny_run, "--epochs", "3", *extra)
    assert result.exit_code == 1
    assert (
        f"{tiny_run / 'checkpoints' / 'last.pt'}: cannot resume" in result.output and named in result.output
    )
    assert read_checkpoint(tiny_run / "checkpoints" / "last.pt")["global_step"] == 4, "checkpoint untouched"


def test_resume_on_other_objects_is_refused(tiny_run, synthetic_dataset, tmp_path):
    """Same classes, views and size, one more object per class: another dataset, not this run's."""
    other = write_dataset(tmp_path / "other", classes=3, train_per_class=4, views=50, size=32)
    result = _train(other.root, tiny_run, "--epochs", "3")
    assert result.exit_code == 1, result.output
    assert "cannot resume" in result.output and "dataset: other objects or labels" in result.output
    assert read_checkpoint(tiny_run / "checkpoints" / "last.pt")["global_step"] == 4, "checkpoint untouched"


def test_a_refused_resume_names_only_the_entries_that_differ_in_nested_settings():
    from benchmark.train.loop import _entry_changes

    saved = {"quality": "fast", "cycles": {"samples": 4, "denoise": True}, "seed": 0}
    given = {"quality": "draft", "cycles": {"samples": 1, "denoise": True}, "seed": 0}
    assert _entry_changes("dataset ", saved, given) == [
        "dataset cycles.samples: 4 -> 1",
        "dataset quality: 'fast' -> 'draft'",
    ]
    assert _entry_changes("", {"a": {"b": 1}}, {"a": 2}) == ["a: {'b': 1} -> 2"]


def test_resume_with_another_method_is_refused(tiny_run, synthetic_dataset):
    arguments = ["train", "--method", "vicreg", "--data", str(synthetic_dataset.root), "--out", str(tiny_run)]
    result = CliRunner().invoke(main, [*arguments, *TINY, "--epochs", "3"])
    assert (
        result.exit_code == 1
        and "cannot resume" in result.output
        and "method: 'sie' -> 'vicreg'" in result.output
    )


@pytest.mark.parametrize("nan_call", [3, 1])
def test_non_finite_loss_stops_naming_the_step_and_the_loss_terms(
    synthetic_dataset, tmp_path, monkeypatch, nan_call
):
    real_loss, calls = losses.sie_loss, []

    def loss_becoming_nan(*args, **kwargs):
        total, terms = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) == nan_call:
            terms = {**terms, "equivariance": terms["equivariance"] * float("nan")}
            total = total * float("nan")
        return total, terms

    monkeypatch.setattr(losses, "sie_loss", loss_becoming_nan)
    config = resolve_config(
        "tiny",
        method="sie",
        data=str(synthetic_dataset.root),
        out=str(tmp_path / "run"),
        image_size=16,
        batch_size=4,
    )
    with pytest.raises(NonFiniteLossError) as raised:
        train(config, progress=False)
    message = str(raised.value)
    assert "equivariance=nan" in message and "invariance=" in message and "loss=nan" in message
    assert "another process" not in message  # one process: the loss is its own
    if nan_call == 1:  # nothing saved yet: the line does not promise a checkpoint
        assert "non-finite loss at epoch 1, step 1 (global step 1)" in message
        assert "weights (no checkpoint was saved yet); try a lower --lr" in message
        assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
        return
    assert "non-finite loss at epoch 2, step 1 (global step 3)" in message
    assert "weights and the last checkpoint is kept; try a lower --lr" in message
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 2, "epoch 1 kept"


def test_unreadable_image_stops_training_with_one_line_naming_the_file(tmp_path):
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=2, val_per_class=0, views=3, size=16)
    folder = dataset.root / dataset.splits["train"][0]
    for view in range(3):
        (folder / spec.image_name(view)).write_bytes(b"\xff\xd8 not really a JPEG")
    result = _train(dataset.root, tmp_path / "run", "--workers", "1", "--epochs", "1")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"{folder}/image_" in error[0] and "cannot decode the image" in error[0]
    assert "Traceback" not in result.output
    assert multiprocessing.active_children() == [], "the DataLoader workers were stopped"


def test_an_image_damaged_inside_stops_training_saying_how_to_go_on(tmp_path):
    """Intact JPEG start and end markers pass the check before training; the decoding error names the
    file and the way out."""
    dataset = write_dataset(tmp_path / "ds", classes=2, train_per_class=3, val_per_class=0, views=3, size=16)
    folder = dataset.root / dataset.splits["train"][0]
    for view in range(3):
        (folder / spec.image_name(view)).write_bytes(b"\xff\xd8" + bytes(64) + b"\xff\xd9")
    result = _train(dataset.root, tmp_path / "run", "--workers", "1", "--epochs", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"{folder}/image_" in error[0] and "cannot decode the image" in error[0]
    assert f"run `3die check {dataset.root}`" in error[0] and "--skip-bad-objects" in error[0]
    (folder / spec.image_name(0)).unlink()  # the way out: delete the damaged files, skip the object
    result = _train(dataset.root, tmp_path / "run", "--workers", "1", "--epochs", "1", "--skip-bad-objects")
    assert result.exit_code == 0, result.output
    assert "skipping 1 of 6 train objects" in result.output


@pytest.mark.parametrize("method", list_methods())
def test_every_method_trains_a_step(synthetic_dataset, tmp_path, method):
    config = resolve_config(
        "tiny", method=method, data=str(synthetic_dataset.root), out=str(tmp_path), image_size=8, width=2,
        batch_size=8, epochs=1, method_options={"projector": "16-16-16"},
    )  # fmt: skip
    result = train(config, progress=False)
    assert result.complete and result.global_step == 1
    payload = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert all(
        torch.isfinite(tensor).all() for tensor in payload["model"].values() if tensor.is_floating_point()
    )
    seed_everything(config.seed, torch.device("cpu"))  # the initial weights, as training draws them
    initial = build_configured_method(config, synthetic_dataset.num_classes)
    # At the first step the zero-initialised last BN gamma of each residual block gives the block's inner
    # layers no gradient, so only weight decay moves them: their first BN's bias (zero) stays.
    unchanged = [
        name
        for name, parameter in initial.named_parameters()
        if name.startswith("backbone.") and not name.endswith(".bn1.bias")
        if torch.equal(parameter, payload["model"][name])
    ]
    assert not unchanged, f"the optimisation step left {unchanged} at their initial values"


def test_presets_live_in_one_file_and_options_override_them(tmp_path):
    paper = presets()["paper"]
    assert (paper["image_size"], paper["width"], paper["batch_size"], paper["epochs"]) == (
        256,
        64,
        1024,
        2000,
    )
    assert (paper["lr"], paper["weight_decay"], paper["amp"]) == (1e-3, 1e-6, True)
    config = resolve_config("mini", method="vicreg", data="d", out="o", epochs=3, width=None)
    assert config.epochs == 3 and config.width == presets()["mini"]["width"]
    assert config.method_options == presets()["mini"]["method_options"]
    with pytest.raises(ConfigError, match="unknown preset 'huge'; presets: paper, mini, tiny"):
        resolve_config("huge", method="sie", data="d", out="o")
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        resolve_config("tiny", method="sie", data="d", out="o", batch_size=0)
    with pytest.raises(ConfigError, match=r"batch_size must be at least 2 \(batch norm .*\), got 1"):
        resolve_config("tiny", method="sie", data="d", out="o", batch_size=1)
    with pytest.raises(ConfigError, match=r"^width must be at most 1024, got 100000$"):  # not a MemoryError
        resolve_config("tiny", method="sie", data="d", out="o", width=100000)
    with pytest.raises(ConfigError, match=r"^image_size must be at most 4096, got 40960$"):
        resolve_config("tiny", method="sie", data="d", out="o", image_size=40960)
    assert parse_method_options(("projector=64",)) == {"projector": "64"}  # a one-layer spec, not a number
    for item in ("=3", " =3", "projector"):
        with pytest.raises(ConfigError, match=f"^--option expects KEY=VALUE, got {item!r}$"):
            parse_method_options((item,))
    assert parse_method_options(("equi_factor=0.5", "projector=8-8-8", "predictor_variance=false")) == {
        "equi_factor": 0.5,
        "projector": "8-8-8",
        "predictor_variance": False,
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_method_options(("novalue",))
    with pytest.raises(
        ConfigError, match=r"^--option equi_factor is given twice \('equi_factor =1'\); keep one$"
    ):
        parse_method_options(("equi_factor=0.5", "equi_factor =1"))


def test_a_batch_larger_than_the_dataset_is_refused(synthetic_dataset, tmp_path):
    result = _train(synthetic_dataset.root, tmp_path / "run", "--batch-size", "32")
    assert (
        result.exit_code == 1 and "batch size 32" in result.output and "lower --batch-size" in result.output
    )


def test_stop_signals_are_recorded_then_handlers_restored():
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    with StopSignals() as signals:
        assert signals.received is None
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signals.received == "SIGUSR1"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C interrupts at once
    assert {number: signal.getsignal(number) for number in STOP_SIGNALS} == before


def test_training_from_the_packed_file_equals_training_from_the_folder(synthetic_dataset, tmp_path):
    packed = tmp_path / "data.h5"
    pack_dataset(synthetic_dataset.root, packed)
    folder_run, packed_run = tmp_path / "folder", tmp_path / "packed"
    assert _train(synthetic_dataset.root, folder_run, "--epochs", "1").exit_code == 0
    result = _train(packed, packed_run, "--epochs", "1", "--workers", "1")
    assert result.exit_code == 0, result.output
    packed_dataset = json.loads((packed_run / "config.json").read_text())["dataset"]
    folder_dataset = json.loads((folder_run / "config.json").read_text())["dataset"]
    assert packed_dataset["kind"] == "packed" and folder_dataset["kind"] == "folder"
    assert packed_dataset["fingerprint"] == folder_dataset["fingerprint"]
    from_folder = read_checkpoint(folder_run / "checkpoints" / "last.pt")["model"]
    from_packed = read_checkpoint(packed_run / "checkpoints" / "last.pt")["model"]
    for name, tensor in from_folder.items():
        assert torch.equal(tensor, from_packed[name]), name


def test_a_resume_on_re_encoded_images_is_refused_and_on_exact_ones_accepted(synthetic_dataset, tmp_path):
    """A pack made with --size re-encodes the JPEGs (other pixels, other weights); one with --raw holds the
    pixels the folder gives at that size, and resizes them (other pixels) at another size. A run at 16 px
    may go on from the folder on a raw pack of 16 px, not on a re-encoded one or a raw one of 32 px."""
    run = tmp_path / "run"
    assert _train(synthetic_dataset.root, run, "--epochs", "1").exit_code == 0
    reencoded, raw, raw32 = tmp_path / "q50.h5", tmp_path / "raw.h5", tmp_path / "raw32.h5"
    pack_dataset(synthetic_dataset.root, reencoded, size=16, quality=50)
    pack_dataset(synthetic_dataset.root, raw, size=16, raw=True)
    pack_dataset(synthetic_dataset.root, raw32, raw=True)  # the rendered 32 px
    refused = _train(reencoded, run, "--epochs", "2")
    assert refused.exit_code == 1
    assert "dataset images re-encoded: no (as rendered) -> 16 px at JPEG quality 50" in refused.output
    refused = _train(raw32, run, "--epochs", "2")
    assert refused.exit_code == 1
    assert "dataset images re-encoded: no (as rendered) -> resized from 32 px pixels" in refused.output
    assert json.loads((run / "config.json").read_text())["dataset"]["reencoded"] is None
    resumed = _train(raw, run, "--epochs", "2")
    assert resumed.exit_code == 0 and "resuming from last.pt" in resumed.output, resumed.output


def test_the_mixed_precision_step_trains_and_is_recorded(synthetic_dataset, tmp_path, monkeypatch):
    """The AMP path of the loop (autocast around the forward pass, the objective in float32), run on the
    CPU in bfloat16 since AMP is only switched on for CUDA: the run trains, its weights stay float32 and
    differ from a float32 run's only by rounding, and config.json records the dtype."""
    from benchmark.train import loop

    options = dict(method="sie", data=str(synthetic_dataset.root), image_size=16, batch_size=4, epochs=1)
    plain = tmp_path / "plain"
    config = resolve_config("tiny", out=str(plain), **options)
    train(config, progress=False)
    assert config.amp and loop.resolve_amp_dtype(config, torch.device("cpu")) is None  # never on the CPU
    monkeypatch.setattr(loop, "resolve_amp_dtype", lambda config, device: torch.bfloat16)
    mixed = tmp_path / "mixed"
    assert train(resolve_config("tiny", out=str(mixed), **options), progress=False).complete
    recorded = json.loads((mixed / "config.json").read_text())
    assert recorded["amp"] is True and recorded["amp_dtype"] == "bfloat16"
    weights = read_checkpoint(mixed / "checkpoints" / "last.pt")["model"]
    reference = read_checkpoint(plain / "checkpoints" / "last.pt")["model"]
    floats = [name for name, tensor in weights.items() if tensor.is_floating_point()]
    assert any(not torch.equal(weights[name], reference[name]) for name in floats), "autocast was applied"
    for name in floats:
        assert weights[name].dtype == torch.float32 and torch.isfinite(weights[name]).all(), name
        torch.testing.assert_close(weights[name], reference[name], rtol=0.05, atol=0.01)


def test_processes_that_loaded_different_checkpoints_are_refused(tmp_path):
    check_same_checkpoint(tmp_path, ["last.pt 0123", "last.pt 0123"])
    check_same_checkpoint(tmp_path, [None, None])
    with pytest.raises(TrainingError, match=r"different checkpoints \(rank 0: last.pt 0123, rank 1: none\)"):
        check_same_checkpoint(tmp_path, ["last.pt 0123", None])


def test_images_smaller_than_the_training_size_are_refused(synthetic_dataset, tmp_path):
    """Training at a size larger than the stored images would only enlarge them: refused, for a folder and
    for a file packed at a smaller size, before any step."""
    packed = tmp_path / "small.h5"
    pack_dataset(synthetic_dataset.root, packed, size=8, raw=True)
    for data, stored in ((synthetic_dataset.root, synthetic_dataset.size), (packed, 8)):
        result = _train(data, tmp_path / f"run{stored}", "--image-size", str(2 * stored))
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        expected = f"{data}: its images are {stored} px, smaller than the {2 * stored} px asked for"
        assert expected in result.output
        assert not (tmp_path / f"run{stored}" / "checkpoints").exists()


def test_a_negative_seed_is_refused_before_anything_is_written(synthetic_dataset, tmp_path):
    result = _train(synthetic_dataset.root, tmp_path / "run", "--seed", "-1")
    assert result.exit_code == 1 and result.output.strip() == "Error: seed must be from 0 to 2^32 - 1, got -1"
    assert not (tmp_path / "run").exists()
    epochs = ["--epochs", "99999999999999999999"]  # a slip of digits: a run that would never end
    result = _train(synthetic_dataset.root, tmp_path / "run", *epochs)
    assert result.output.strip() == "Error: epochs must be at most 1000000, got 99999999999999999999"
    for option in (["--lr", "nan"], ["--lr", "inf"], ["--weight-decay", "nan"], ["--seed", str(2**32)]):
        result = _train(synthetic_dataset.root, tmp_path / "run", *option)
        assert result.exit_code == 1 and result.output.startswith("Error: "), (option, result.output)
        assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_different_world_size_resumes_only_at_an_epoch_boundary(tiny_run):
    saved = read_checkpoint(tiny_run / "checkpoints" / "last.pt")
    other = {**saved["config"], "world_size": 2}
    sha256 = "0" * 64
    check_resumable(LoadedCheckpoint(saved, tiny_run / "last.pt", sha256), other)  # end of an epoch: allowed
    mid_epoch = {**saved, "step_in_epoch": 1}
    with pytest.raises(TrainingError, match=r"world size: 1 -> 2 in the middle of epoch 3"):
        check_resumable(LoadedCheckpoint(mid_epoch, tiny_run / "last.pt", sha256), other)


def test_a_stop_at_the_last_step_of_an_epoch_saves_the_finished_epoch(
    synthetic_dataset, tmp_path, monkeypatch
):
    """The checkpoint of a run stopped by a signal at its very last step says the run is complete."""
    real_step = Trainer._step

    def stop_at_the_last_step(self, batch, signals):
        if self.step_in_epoch == self.steps_per_epoch - 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return real_step(self, batch, signals)

    monkeypatch.setattr(Trainer, "_step", stop_at_the_last_step)
    run = tmp_path / "run"
    config = resolve_config(
        "tiny", method="sie", data=str(synthetic_dataset.root), out=str(run), image_size=16, batch_size=4
    )
    result = train(config, progress=False)
    assert result.interrupted_by == "SIGUSR1"
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 0, 2)
    _, trained = load_trained(run)
    assert trained["checkpoint"]["epochs_done"] == 1 and not trained["checkpoint"]["complete"]
    monkeypatch.setattr(Trainer, "_step", real_step)
    assert train(config, progress=False).global_step == 4
    _, trained = load_trained(run)
    assert trained["checkpoint"]["epochs_done"] == 2 and trained["checkpoint"]["complete"]


def test_a_checkpoint_that_is_no_training_checkpoint_stops_with_one_line(synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints", {"epoch": 1})
    result = _train(synthetic_dataset.root, run, "--epochs", "1")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert (
        len(errors) == 1
        and f"{run / 'checkpoints' / 'last.pt'}: not a training checkpoint (no config" in errors[0]
    )


def test_only_the_training_device_cuda_generator_is_saved_and_restored(monkeypatch):
    """A run saved on 8 GPUs resumes on a machine with fewer: each process restores its own device's
    generator from the saved state (every device is seeded and advanced alike)."""
    assert cuda_rng_states(torch.device("cpu")) == []
    restore_cuda_rng([torch.zeros(16, dtype=torch.uint8)], torch.device("cpu"))  # a GPU run resumed on a CPU
    saved = [torch.full((16,), index, dtype=torch.uint8) for index in range(8)]
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved[device.index])
    assert [state[0].item() for state in cuda_rng_states(torch.device("cuda", 3))] == [3]
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    restore_cuda_rng(saved, torch.device("cuda", 0))
    assert len(restored) == 1 and restored[0][0] is saved[0] and restored[0][1] == torch.device("cuda", 0)


def test_a_gpu_that_is_not_there_is_refused_with_one_line(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _train(synthetic_dataset.root, tmp_path / "run", "--device", "cuda")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: device cuda:0 was asked for but CUDA is not available; use --device cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")  # a fourth process per node on a machine with 2 GPUs
    with pytest.raises(
        ConfigError, match=r"process 0 was given cuda:3 but 2 GPUs are visible; start at most 2"
    ):
        start_processes("auto")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match=r"^device cuda:0 would put all 2 processes on one GPU; use"):
        start_processes("cuda:0")


def test_the_global_batch_is_split_evenly_between_processes():
    assert per_process_batch(8, 2) == 4 and per_process_batch(8, 1) == 8
    with pytest.raises(ConfigError, match="batch size 6 is not divisible by the 4 processes"):
        per_process_batch(6, 4)


def test_the_dataset_fingerprint_covers_objects_labels_and_views(synthetic_dataset):
    views = open_dataset(synthetic_dataset.root, "train")
    fingerprint = dataset_fingerprint(views)
    relabelled = subset(views, list(range(len(views))))
    relabelled.labels = views.labels.copy()
    relabelled.labels[0] = (relabelled.labels[0] + 1) % views.num_classes
    fewer_views = subset(views, list(range(len(views))))
    fewer_views.views = views.views - 1
    others = [relabelled, fewer_views, subset(views, list(range(1, len(views))))]
    assert len({fingerprint, *(dataset_fingerprint(other) for other in others)}) == 4
    assert dataset_fingerprint(subset(views, list(range(len(views))))) == fingerprint


def test_running_out_of_memory_is_one_line_that_keeps_what_is_written(tmp_path, monkeypatch):
    """Any command: a MemoryError (an allocation larger than the machine) ends in one line."""

    def too_large(*arguments, **options):
        raise MemoryError("Unable to allocate 96.0 GiB for an array")

    monkeypatch.setattr("benchmark.data.pack_dataset", too_large)
    dataset = write_dataset(tmp_path / "ds", classes=1, train_per_class=2, val_per_class=0, views=2, size=8)
    result = CliRunner().invoke(main, ["pack", str(dataset.root), "--out", str(tmp_path / "d.h5")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: out of memory (Unable to allocate 96.0 GiB for an array)"), line


def test_each_seed_draws_its_own_initial_weights():
    from sie_models import build_method

    weights = []
    for seed in (0, 0, 1):
        seed_everything(seed, torch.device("cpu"))
        weights.append(build_method("vicreg", image_size=16, width=2, projector="8-8-8").state_dict())
    first, again, other = (torch.cat([w.flatten().float() for w in state.values()]) for state in weights)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_the_local_rank_defaults_to_the_rank_and_unknown_presets_keep_every_option():
    from benchmark.train.config import options_beyond_preset
    from benchmark.train.distributed import environment_ranks

    assert environment_ranks({}) == (0, 1, 0)
    assert environment_ranks({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2, 1)
    assert environment_ranks({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    options = {"projector": "64-64-64"}
    assert options_beyond_preset("sie", "custom", options) == options
