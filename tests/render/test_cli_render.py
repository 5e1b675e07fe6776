"""`3die render` and `3die check` end to end, and a render killed with SIGKILL then resumed."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from render import spec, writer
from render.sampling import object_latents
from render.sources import ProceduralSource

sys.path.insert(0, str(Path(__file__).parents[1] / "reliability"))
import faults

pytestmark = pytest.mark.slow

CLASSES = ("chair", "mug")
PROCEDURAL = ["--classes", ",".join(CLASSES), "--per-class", "1", "--device", "cpu"]


def test_render_then_check_then_break_it(tmp_path):
    out = tmp_path / "data"
    runner = CliRunner()
    args = ["render", "--out", str(out), *PROCEDURAL, "--views", "3", "--size", "32", "--quality", "draft"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "rendered 2 objects (6 images)" in result.output
    # one object per class stays in train: the render says the val split, which evaluation needs, is empty
    assert f"{out}: note: no object of this dataset is in the val split" in result.output
    images = sorted(out.glob("*/*/image_*.jpg"))
    assert len(images) == 6 and len(list(out.glob("*/*/latent_*.npy"))) == 6
    assert np.load(out / "train_images.npy").size + np.load(out / "val_images.npy").size == 2
    assert runner.invoke(main, ["check", str(out)]).exit_code == 0

    again = runner.invoke(main, args)
    assert (
        again.exit_code == 0
        and "rendered 0 objects (0 images)" in again.output
        and "2 already done" in again.output
    )

    images[0].write_bytes(images[0].read_bytes()[:200])  # truncated JPEG
    latent = sorted(out.glob("*/*/latent_*.npy"))[-1]
    np.save(latent, np.zeros((spec.LATENT_DIM, 1)))  # wrong shape
    result = runner.invoke(main, ["check", str(out)])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    key_0, key_1 = (path.parent.relative_to(out).as_posix() for path in (images[0], latent))
    assert any(line.startswith(f"{key_0}: {images[0].name} does not decode") for line in lines), lines
    assert f"{key_1}: {latent.name} has shape ({spec.LATENT_DIM}, 1), expected ({spec.LATENT_DIM},)" in lines
    assert lines[-1].endswith("2 with problems")


def test_bad_options_give_one_clear_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["render", "--out", str(tmp_path), "--classes", "spaceship"])
    assert result.exit_code == 1 and "unknown procedural classes spaceship" in result.output
    result = runner.invoke(main, ["render", "--out", str(tmp_path), "--quality", "ultra"])
    assert result.exit_code == 1 and "unknown quality preset 'ultra'" in result.output
    result = runner.invoke(main, ["render", "--out", str(tmp_path), "--shard", "2/2"])
    assert result.exit_code == 1 and "0 <= K < N" in result.output
    for option, value, least, most in (
        ("--size", "0", 4, 4096),
        ("--size", "3", 4, 4096),  # Blender would render 4 x 4 pixels: a dataset `3die check` refuses
        ("--views", "0", 1, 10000),
        ("--views", "1000000000", 1, 10000),
    ):
        result = runner.invoke(main, ["render", "--out", str(tmp_path / "d"), option, value])
        assert result.exit_code == 1, result.output
        assert result.output.strip() == f"Error: {option} must be from {least} to {most}, got {value}"
    assert not (tmp_path / "d").exists(), (
        "a refused render records no settings (a rerun is not bound by them)"
    )


def render_process(out, views, fault: str = "", target: str = "", log: str = ""):
    """`3die render` in a new session (its own process group); with `fault`, its source is faults.py's
    FaultySource injecting `fault` into the object `target`."""
    arguments = ["render", "--out", str(out), *PROCEDURAL, "--views", str(views), "--size", "48"]
    arguments += ["--quality", "fast"]
    if fault:
        command = faults.faulty_cli_command(fault, target, log, *arguments)
    else:
        command = faults.cli_command(*arguments)
    return subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=faults.child_env(),
    )


def test_sigkill_mid_object_then_resume(tmp_path):
    """The worker stops itself before rendering view STOP_VIEW of one object; the whole run is then killed
    from outside with SIGKILL, and the rerun completes every object with the expected latents."""
    out, views, log = tmp_path / "data", 8, tmp_path / "workers.log"
    target = ProceduralSource(CLASSES, 1, seed=0).objects()[0]
    process = render_process(out, views, "render-stop", target.object_id, str(log))
    try:
        faults.wait_for_stopped_worker(process, log, target.key)
    finally:  # the whole run, the stopped worker included; also after a failed wait, so nothing is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    started = writer.object_dir(out, target)
    assert not writer.is_complete(started)
    assert 1 <= len(list(started.glob("latent_*.npy"))) <= faults.STOP_VIEW

    resumed = render_process(out, views)
    _, errors = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, errors[-2000:]
    assert not list(out.rglob(f"*{writer.TEMP_TAG}*")), "temporary files left behind"
    for folder in out.glob("*/*/"):
        assert writer.is_complete(folder)
        synset, object_id = folder.parent.name, folder.name
        saved = np.stack([np.load(folder / spec.latent_name(v)) for v in range(views)])
        np.testing.assert_array_equal(saved, object_latents(0, synset, object_id, views))
    from render.check import check_dataset

    report = check_dataset(out)
    assert report.ok, report.lines()
    assert report.objects == 2 and report.images == 2 * views


def test_ctrl_c_stops_the_render_at_once_with_one_line_and_the_rerun_resumes(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the workers leave it to the main
    process, which terminates them instead of waiting for their objects, says so in one line and exits
    130; the complete objects stay and the rerun finishes the dataset."""
    out, views = tmp_path / "data", 30
    arguments = ["render", "--out", str(out), *PROCEDURAL, "--views", str(views), "--size", "48"]
    process = subprocess.Popen(
        faults.cli_command(*arguments, "--quality", "fast", "--workers", "2"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=faults.child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not ignored as in a background job
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob(f"*/*/{spec.image_name(1)}")) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, errors = process.communicate(timeout=30)  # not the rest of the objects in flight
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, errors[-3000:]
    assert "Traceback" not in errors, errors[-3000:]
    assert f"{out}: interrupted; the objects already complete are kept, rerun the same command" in errors
    assert not all(writer.is_complete(folder) for folder in out.glob("*/*/")), "stopped mid-object"
    resumed = subprocess.run(
        faults.cli_command(*arguments, "--quality", "fast"), capture_output=True, text=True,
        timeout=300, env=faults.child_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    from render.check import check_dataset

    assert check_dataset(out).ok and not list(out.rglob(f"*{writer.TEMP_TAG}*"))


def test_slurm_signals_reaching_a_worker_leave_it_rendering(tmp_path):
    """SLURM signals every process of a job step before its time limit (SIGUSR2 for submitit); the
    render's main process answers it (submitit requeues the task), its workers ignore it and SIGUSR1:
    no crash, no failure."""
    out, log = tmp_path / "data", tmp_path / "workers.log"
    target = ProceduralSource(CLASSES, 1, seed=0).objects()[0]
    process = render_process(out, 4, "render-stop", target.object_id, str(log))
    try:
        worker = faults.wait_for_stopped_worker(process, log, target.key)
        for number in (signal.SIGUSR2, signal.SIGUSR1, signal.SIGCONT):
            os.kill(worker, number)
        _, errors = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, errors[-2000:]
    loads = [line.split() for line in log.read_text().splitlines()]
    assert {pid for pid, _ in loads} == {str(worker)} and len(loads) == 2, "one worker rendered both"
    assert not (out / spec.FAILURES_NAME).exists()
    from render.check import check_dataset

    assert check_dataset(out).ok


def test_workers_exit_when_the_render_is_killed_alone(tmp_path):
    """SIGKILL to the main process only (as the OOM killer does): its Blender worker does not linger."""
    out, log = tmp_path / "data", tmp_path / "workers.log"
    target = ProceduralSource(CLASSES, 1, seed=0).objects()[0]
    process = render_process(out, 4, "render-stop", target.object_id, str(log))
    try:
        worker = faults.wait_for_stopped_worker(process, log, target.key)
        process.kill()
        process.wait()
        os.kill(worker, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while faults.process_state(worker) not in ("", "Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert faults.process_state(worker) in ("", "Z"), "the worker outlived its render"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not writer.is_complete(writer.object_dir(out, target))


def test_a_worker_that_cannot_set_up_blender_stops_the_run_with_the_reason(tmp_path):
    args = ["render", "--out", str(tmp_path), "--classes", "mug", "--per-class", "1", "--views", "1"]
    result = CliRunner().invoke(main, [*args, "--size", "8", "--quality", "draft", "--device", "gpu"])
    if result.exit_code == 0:  # this machine has a GPU that Cycles can use: the render must be complete
        assert "rendered 1 objects (1 images)" in result.output
    else:
        assert result.exit_code == 1
        assert "could not set up Blender" in result.output and "found no OptiX, CUDA" in result.output
        assert not (tmp_path / spec.FAILURES_NAME).exists()  # not blamed on the object


def test_an_out_that_is_a_dangling_link_is_named(tmp_path):
    link = tmp_path / "data"
    link.symlink_to(tmp_path / "elsewhere" / "data")
    result = CliRunner().invoke(
        main, ["render", "--out", str(link), *PROCEDURAL, "--views", "2", "--size", "16"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == (
        f"Error: {link}: a symbolic link to {tmp_path / 'elsewhere' / 'data'}, which does not exist; create "
        "that folder, or give another --out"
    )
