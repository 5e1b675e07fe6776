"""Training killed while it saves a checkpoint, and a corrupted checkpoint, each followed by a rerun that
reaches the weights of an uninterrupted run.

Also real and elsewhere: SIGKILL and SIGTERM mid-training then resume (tests/benchmark/test_train_resume.py),
damaged checkpoint files falling back to previous.pt (test_checkpoint.py), a NaN loss and a config that
does not match the checkpoint, other method or width (test_train.py).
A second training launched on a run folder that is being trained stops at once.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.train import INTERRUPTED_EXIT_STATUS, read_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmark"))
from faults import obey_permissions
from initial_weights import parameters_left_at_initial
from synthetic_data import write_dataset

pytestmark = pytest.mark.slow

EPOCHS = 3  # of 2 steps: 8 objects in batches of 4
#: Runs `3die train` with os.fsync replaced so that the process kills itself inside its second checkpoint
#: save, after the checkpoint's bytes are written to the temporary file and before it is renamed.
KILLED_IN_SECOND_SAVE = """
import os, signal, sys
real_fsync, saves = os.fsync, []
def fsync(fd):
    if ".last.pt.tmp-" in os.readlink(f"/proc/self/fd/{fd}"):  # a checkpoint's data, not a folder or JSON
        saves.append(fd)
        if len(saves) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
from benchmark.cli import main
sys.argv[0] = "3die"
main()
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-faults") / "data"
    return write_dataset(root, classes=2, train_per_class=4, val_per_class=0, views=4, size=16)


def train_arguments(data, run, epochs=EPOCHS) -> list[str]:
    return [
        "train", "--method", "sie", "--data", str(data), "--out", str(run), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--epochs", str(epochs), "--workers", "0", "--no-progress",
    ]  # fmt: skip


def run(arguments, script="from benchmark.cli import main; main()") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=300, env=env
    )


def trained(arguments) -> subprocess.CompletedProcess:
    finished = run(arguments)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The weights of an uninterrupted run."""
    folder = tmp_path_factory.mktemp("train-faults") / "reference"
    trained(train_arguments(dataset.root, folder))
    payload = read_checkpoint(folder / "checkpoints" / "last.pt")
    assert not parameters_left_at_initial(payload), "the runs compared must have learned"
    return payload["model"]


def assert_same_weights(run_dir, reference) -> None:
    payload = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["epoch"] == EPOCHS and payload["step_in_epoch"] == 0
    for name, tensor in reference.items():
        assert torch.equal(payload["model"][name], tensor), f"{name} differs from the uninterrupted run"


def test_sigkill_while_saving_a_checkpoint_then_rerun(dataset, reference, tmp_path):
    folder = tmp_path / "run"
    killed = run(train_arguments(dataset.root, folder), script=KILLED_IN_SECOND_SAVE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = folder / "checkpoints"
    half_saved = list(checkpoints.glob(".last.pt.tmp-*"))
    assert len(half_saved) == 1 and half_saved[0].stat().st_size > 0, "killed inside the save"
    assert read_checkpoint(checkpoints / "last.pt")["epoch"] == 1, "the previous save is intact"

    resumed = trained(train_arguments(dataset.root, folder))
    assert "resuming from last.pt at epoch 2, step 0" in resumed.stdout + resumed.stderr
    assert_same_weights(folder, reference)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt", "previous.pt"], (
        "temporary file removed"
    )


#: Runs `3die train` that receives SIGNAL (the first argument) while it checks the dataset, before its
#: first step, as a scheduler's preemption signal (or a Ctrl-C) may arrive while a job starts up.
SIGNALLED_WHILE_STARTING = """
import os, signal, sys
from benchmark.train import loop
received = getattr(signal, sys.argv.pop(1))
check = loop.training_split
def training_split(*arguments, **options):
    os.kill(os.getpid(), received)
    return check(*arguments, **options)
loop.training_split = training_split
from benchmark.cli import main
sys.argv[0] = "3die"
main()
"""


@pytest.mark.parametrize("received", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_stop_signal_while_the_run_starts_stops_it_before_its_first_step(
    dataset, reference, tmp_path, received
):
    """Caught from the start, the signal stops the run with the status of a stopped run (75, which a
    scheduler requeues) before it trains or saves anything, fresh or resumed; the rerun trains as usual."""
    folder = tmp_path / "run"
    for epochs in (EPOCHS, 1, EPOCHS):  # a fresh run, then one resumed from its epoch 1 checkpoint
        if epochs == 1:
            trained(train_arguments(dataset.root, folder, epochs=1))
            saved = (folder / "checkpoints" / "last.pt").read_bytes()
            saved_config = (folder / "config.json").read_bytes()  # of 1 epoch, not the 3 asked for next
            continue
        stopped = run([received, *train_arguments(dataset.root, folder)], script=SIGNALLED_WHILE_STARTING)
        assert stopped.returncode == INTERRUPTED_EXIT_STATUS, stopped.stderr[-3000:]
        said = f"{folder}: stopped by {received} before its first step; nothing was trained or saved"
        assert said in stopped.stdout, stopped.stdout + stopped.stderr[-3000:]
        last, config = folder / "checkpoints" / "last.pt", folder / "config.json"
        assert (last.read_bytes() == saved) if last.exists() else epochs == EPOCHS
        assert (config.read_bytes() == saved_config) if last.exists() else not config.exists()
    trained(train_arguments(dataset.root, folder))
    assert_same_weights(folder, reference)


def test_a_corrupted_last_checkpoint_resumes_from_the_previous_one(dataset, reference, tmp_path):
    folder = tmp_path / "run"
    trained(train_arguments(dataset.root, folder, epochs=2))
    last = folder / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the payload
    last.write_bytes(bytes(data))

    resumed = trained(train_arguments(dataset.root, folder))
    said = resumed.stdout + resumed.stderr
    assert (
        f"{last}: checksum mismatch (the file is corrupt); resuming from {last.with_name('previous.pt')}"
        in said
    )
    assert "resuming from previous.pt at epoch 2, step 0" in said
    assert_same_weights(folder, reference)


def test_truncated_last_and_previous_checkpoints_stop_with_one_line(dataset, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    for epoch in (1, 2):
        save_checkpoint(folder, {"epoch": epoch, "model": {"weight": torch.zeros(100)}})
    for name in ("last.pt", "previous.pt"):
        (folder / name).write_bytes((folder / name).read_bytes()[:200])
    refused = CliRunner().invoke(main, train_arguments(dataset.root, folder.parent))
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    error = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "last.pt: truncated" in error[0] and "previous.pt: truncated" in error[0]
    assert "delete the checkpoints folder to start again" in error[0]


def test_a_full_disk_stops_training_with_one_line_and_keeps_the_last_checkpoint(dataset, tmp_path):
    """A checkpoint save that hits the file-size limit (as on a full disk) ends `3die train` with one error
    line, no traceback, and the checkpoint of the epoch before it intact; a rerun without the limit
    finishes the run."""
    folder = tmp_path / "run"
    trained(train_arguments(dataset.root, folder, epochs=1))
    size = (folder / "checkpoints" / "last.pt").stat().st_size

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    command = [sys.executable, "-c", "from benchmark.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(
        [*command, *train_arguments(dataset.root, folder)],
        capture_output=True, text=True, timeout=300, env=env, preexec_fn=limit,
    )  # fmt: skip
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "free disk space" in errors[0], full.stderr[-3000:]
    assert read_checkpoint(folder / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list((folder / "checkpoints").glob("*.tmp*"))
    trained(train_arguments(dataset.root, folder))
    assert read_checkpoint(folder / "checkpoints" / "last.pt")["epoch"] == EPOCHS


def test_a_file_where_the_run_needs_a_folder_is_named_as_in_the_way(dataset, tmp_path):
    """A file in place of RUN/tensorboard is neither a full disk nor a permission: the line says so, as
    the run starts."""
    folder = tmp_path / "run"
    trained(train_arguments(dataset.root, folder, epochs=1))
    shutil.rmtree(folder / "tensorboard")
    (folder / "tensorboard").write_text("")
    refused = run(train_arguments(dataset.root, folder))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: {folder / 'tensorboard'}: File exists; training stopped and the checkpoints already saved "
        "are kept: move away the file or folder in the way (a file where a folder belongs, or the reverse), "
        "then rerun the same command"
    ]


def test_an_allocation_beyond_the_memory_limit_is_one_line(dataset, tmp_path):
    """VICReg's projector of two 65,536-wide layers asks for a 17 GB weight matrix: under an 8 GB
    address-space limit the allocation fails at once, and `3die train` says so in one line instead of
    torch's allocator traceback."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    arguments = train_arguments(dataset.root, tmp_path / "run")
    arguments[arguments.index("sie")] = "vicreg"
    arguments += ["--option", "projector=65536-65536"]
    refused = subprocess.run(
        [sys.executable, "-c", "from benchmark.cli import main; main()", *arguments],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=limit,
    )  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("Error: out of memory (") and "can't allocate memory" in line, line
    assert line.endswith("then rerun the same command: what is already written is kept")


def test_a_read_only_checkpoints_folder_stops_training_with_one_line_and_keeps_the_checkpoints(
    dataset, tmp_path
):
    """The checkpoints folder turns read-only after epoch 1 (a quota, a remount): the resumed run stops as
    it starts, before training an epoch it could not save, with one line naming the folder, the epoch 1
    checkpoint intact; once writable again a rerun finishes the run."""
    folder = tmp_path / "run"
    trained(train_arguments(dataset.root, folder, epochs=1))
    checkpoints = folder / "checkpoints"
    before = {path.name: path.read_bytes() for path in checkpoints.iterdir()}
    command = [sys.executable, "-c", "from benchmark.cli import main; main()"]
    checkpoints.chmod(0o555)
    try:
        refused = subprocess.run(
            [*command, *train_arguments(dataset.root, folder)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=obey_permissions,
        )  # fmt: skip
    finally:
        checkpoints.chmod(0o755)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Permission denied" in errors[0] and str(checkpoints) in errors[0], errors
    assert "make the folder writable, then rerun the same command" in errors[0]
    assert {path.name: path.read_bytes() for path in checkpoints.iterdir()} == before
    trained(train_arguments(dataset.root, folder))
    assert read_checkpoint(checkpoints / "last.pt")["epoch"] == EPOCHS


def test_a_second_training_of_the_same_run_folder_stops_at_once_and_the_first_goes_on(dataset, tmp_path):
    """Two launches on one --out (a command run twice, `srun` without torchrun starting one per task): the
    second stops with one line naming the holder before it loads or writes anything, and the first trains
    on, stops on SIGTERM with its checkpoint, and the folder is free for the next launch."""
    folder = tmp_path / "run"
    arguments = train_arguments(dataset.root, folder, epochs=100_000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-c", "from benchmark.cli import main; main()", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        lock, checkpoint = folder / ".train.lock", folder / "checkpoints" / "last.pt"
        deadline = time.monotonic() + 120
        while not (checkpoint.exists() and lock.exists() and lock.read_text().startswith("pid")):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.2)
        refused = run(arguments)
        assert first.poll() is None, "the first training still runs"
    finally:
        first.send_signal(signal.SIGTERM)
        _, first_errors = first.communicate(timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: {folder}: another training of this run folder is running (pid {first.pid} on "
        f"{socket.gethostname()}); wait for it to finish or stop it, or pass another --out"
    ], refused.stderr[-3000:]
    assert first.returncode == 75, first_errors[-3000:]
    saved = read_checkpoint(checkpoint)
    epochs = saved["epoch"] + (saved["step_in_epoch"] > 0)  # the first one's, finished
    again = trained(train_arguments(dataset.root, folder, epochs=epochs))  # the lock went with the first
    assert "another training" not in again.stdout + again.stderr
