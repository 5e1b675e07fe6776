"""A render killed at chosen points (inside an object, between objects, while writing a dataset file at the
root), concurrent shards, a full disk and a read-only folder.

Every fault is real: the run is SIGKILLed (its whole process group, Blender workers included) at a
deterministic point, files are limited in size with RLIMIT_FSIZE, permissions are enforced with chmod (root
drops its permission override first). The SIGKILL in the middle of an object (its worker stopped before
view 3, earlier views possibly still being written) is tests/render/test_cli_render.py's
test_sigkill_mid_object_then_resume; a worker that dies alone is test_launch.py's
test_an_object_that_kills_its_worker_is_recorded_and_the_rest_render.
"""

import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter

import numpy as np
import pytest
from faults import (
    CLI_OPTIONS,
    VIEWS,
    child_command,
    child_env,
    cli_command,
    files_of,
    limit_file_size,
    obey_permissions,
    plain_source,
    render_config,
)

from render import spec, writer
from render.check import ROOT_TEMP_MESSAGE, check_dataset
from render.launch import prepare_dataset

pytestmark = pytest.mark.slow

OBJECTS = plain_source().objects()


def run(command, timeout=300, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=child_env(), **options
    )


def render_cli(out, **options) -> subprocess.CompletedProcess:
    return run(cli_command("render", "--out", str(out), *CLI_OPTIONS), **options)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted render of the test dataset: relative path -> bytes."""
    out = tmp_path_factory.mktemp("reference") / "data"
    finished = render_cli(out)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return out


def assert_same_as_reference(out, reference) -> None:
    """The dataset passes the check, holds no temporary file, and equals the uninterrupted render file by
    file (latents, and images: Cycles renders the same pixels for the same seed)."""
    report = check_dataset(out)
    assert report.ok, report.lines()
    assert not [p for p in out.rglob("*") if writer.TEMP_TAG in p.name], "temporary files left behind"
    produced, expected = files_of(out), files_of(reference)
    expected.pop(writer.LOCK_NAME, None), produced.pop(writer.LOCK_NAME, None)
    assert produced.keys() == expected.keys()
    for name, content in expected.items():
        if name.endswith(".npy") or name.endswith(".jpg"):
            assert produced[name] == content, f"{name} differs from the uninterrupted render"


@pytest.mark.parametrize("fault", ["jpeg-write", "between-objects"])
def test_sigkill_then_rerun_equals_an_uninterrupted_render(fault, reference, tmp_path):
    out = tmp_path / "data"
    target = OBJECTS[1]
    killed = run(
        child_command(str(out), "--fault", fault, "--target", target.object_id), start_new_session=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    first, second = (writer.object_dir(out, obj) for obj in OBJECTS)
    assert writer.is_complete(first) and not writer.is_complete(second)
    if fault == "jpeg-write":  # view 0 written, view 1's JPEG half written under its temporary name
        half = [p for p in second.iterdir() if writer.TEMP_TAG in p.name]
        assert [p.name.split(writer.TEMP_TAG)[0] for p in half] == [".image_1.jpg"], sorted(second.iterdir())
        assert (second / "image_0.jpg").is_file() and not (second / "image_1.jpg").exists()
    else:  # claimed (its folder and claim file exist) but not started
        assert not second.exists() or {p.name for p in second.iterdir()} <= {writer.CLAIM_NAME}
    assert not check_dataset(out).ok, "the check sees the interrupted render"

    resumed = render_cli(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "rendered 1 objects" in resumed.stdout and "1 already done" in resumed.stdout
    assert_same_as_reference(out, reference)


@pytest.mark.parametrize("name", [spec.MANIFEST_NAME, spec.OBJECTS_CSV_NAME, "train_images.npy"])
def test_sigkill_while_writing_a_root_file_then_rerun_removes_its_temporary_file(name, reference, tmp_path):
    out = tmp_path / "data"
    killed = run(child_command(str(out), "--fault", "root-write", "--target", name), start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    strays = writer.root_temp_files(out)
    assert [p.name.startswith(f".{name}.") for p in strays] == [True], sorted(out.iterdir())
    assert not (out / name).exists(), "killed before the rename"

    checked = run(cli_command("check", "--quick", str(out)))
    assert checked.returncode == 1, checked.stdout
    assert f"{strays[0].name}: {ROOT_TEMP_MESSAGE}" in checked.stdout.splitlines()

    resumed = render_cli(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not strays[0].exists(), "the rerun removes the temporary file"
    assert_same_as_reference(out, reference)


def write_root_file_elsewhere(root, name) -> subprocess.Popen:
    """A process that holds the dataset lock with ROOT/.NAME.tmp-PID half written, as a render writing NAME
    does, until its stdin closes; then it renames the file into place."""
    script = (
        "import os, sys; from pathlib import Path; from render import writer\n"
        "root, name = Path(sys.argv[1]), sys.argv[2]\n"
        f"temp = root / f'.{{name}}{writer.TEMP_TAG}{{os.getpid()}}'\n"
        "with writer.dataset_lock(root):\n"
        "    temp.write_bytes(b'half'); print(temp.name, flush=True); sys.stdin.read()\n"
        "    os.replace(temp, root / name)\n"
    )
    writing = subprocess.Popen(
        [sys.executable, "-c", script, str(root), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.is_root_temp(writing.stdout.readline().strip())
    return writing


def test_a_root_file_another_process_is_writing_is_not_swept(tmp_path):
    """A render starting while another shard writes a split file waits for the dataset lock; the other
    shard's temporary file is never swept (its rename would fail)."""
    out = tmp_path / "data"
    out.mkdir()
    writing = write_root_file_elsewhere(out, "train_images.npy")
    prepared = threading.Thread(target=prepare_dataset, args=(render_config(out), plain_source(), OBJECTS))
    try:
        prepared.start()
        prepared.join(timeout=2)
        assert prepared.is_alive(), "the render waits for the dataset lock"
        assert len(writer.root_temp_files(out)) == 1 and not (out / spec.MANIFEST_NAME).exists()
    finally:
        writing.communicate("", timeout=30)
        prepared.join(timeout=30)
    assert writing.returncode == 0, "the other process renamed its file into place"
    assert (out / "train_images.npy").read_bytes() == b"half"
    assert (out / spec.MANIFEST_NAME).is_file() and (out / spec.OBJECTS_CSV_NAME).is_file()
    assert not writer.root_temp_files(out)


def test_concurrent_shards_and_workers_never_render_the_same_object(reference, tmp_path):
    out, log = tmp_path / "data", tmp_path / "loads.log"
    shards = [
        subprocess.Popen(
            child_command(str(out), "--shard", f"{k}/2", "--workers", "2", "--log", str(log)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for k in (0, 1)
    ]
    for shard in shards:
        _, errors = shard.communicate(timeout=300)
        assert shard.returncode == 0, errors[-3000:]
    loads = [line.split() for line in log.read_text().splitlines()]
    counts = Counter(key for _, key in loads)
    assert counts == Counter({obj.key: 1 for obj in OBJECTS}), "an object was started twice"
    assert_same_as_reference(out, reference)


def test_two_copies_of_the_same_shard_never_render_the_same_object(reference, tmp_path):
    """A duplicated array task: two runs of the same shard into one folder at the same time. Each object is
    claimed by one of them (a lock on its folder); the other leaves it, and the dataset is the reference."""
    out, log = tmp_path / "data", tmp_path / "loads.log"
    copies = [
        subprocess.Popen(
            child_command(str(out), "--shard", "0/1", "--workers", "1", "--log", str(log)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(2)
    ]
    for copy in copies:
        _, errors = copy.communicate(timeout=300)
        assert copy.returncode == 0, errors[-3000:]
    counts = Counter(key for _, key in (line.split() for line in log.read_text().splitlines()))
    assert counts == Counter({obj.key: 1 for obj in OBJECTS}), "an object was rendered by both copies"
    assert_same_as_reference(out, reference)


def claim_held_elsewhere(folder) -> subprocess.Popen:
    """A process that holds the claim of `folder` until its stdin closes."""
    script = (
        "import sys; from pathlib import Path; from render import writer\n"
        "with writer.claim_object(Path(sys.argv[1])) as claimed:\n"
        "    print(claimed, flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "True"
    return holder


def test_an_object_claimed_by_another_process_is_left_to_it(tmp_path):
    folder = tmp_path / "SYNSET" / "OBJECT"
    holder = claim_held_elsewhere(folder)
    assert (folder / writer.CLAIM_NAME).is_file()  # a file, writable: NFS locks need one
    try:
        with writer.claim_object(folder) as claimed:
            assert claimed is False
    finally:
        holder.communicate("", timeout=30)
    with writer.claim_object(folder) as claimed:  # released when its holder ended
        assert claimed is True


def test_a_render_says_which_objects_it_left_to_another_process(reference, tmp_path):
    out = damaged_copy(reference, tmp_path)
    holder = claim_held_elsewhere(writer.object_dir(out, OBJECTS[1]))
    try:
        finished = render_cli(out)
    finally:
        holder.communicate("", timeout=30)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "rendered 0 objects (0 images)" in finished.stdout
    left = f"{len(OBJECTS) - 1} already done; 1 left to another process that was rendering them"
    assert left in finished.stdout
    assert not (writer.object_dir(out, OBJECTS[1]) / "image_0.jpg").exists()


def damaged_copy(reference, tmp_path):
    """The reference dataset without its second object (as if the run had not reached it yet)."""
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    shutil.rmtree(writer.object_dir(out, OBJECTS[1]))
    return out


def assert_stopped_cleanly(finished, out, before, reason) -> None:
    """One clear error line, no traceback, the complete object untouched, no temporary file."""
    assert finished.returncode == 1, finished.stderr[-3000:]
    assert "Traceback" not in finished.stderr
    error = [line for line in finished.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and reason in error[0] and "rerun the same command" in error[0], finished.stderr
    after = files_of(out)
    kept = {name: content for name, content in before.items() if name.startswith(OBJECTS[0].key)}
    assert {name: after[name] for name in kept} == kept, "a complete object changed"
    assert not [p for p in out.rglob("*") if writer.TEMP_TAG in p.name], "temporary files left behind"


def test_full_disk_stops_with_a_clear_error_and_keeps_complete_objects(reference, tmp_path):
    out = damaged_copy(reference, tmp_path)
    before = files_of(out)
    finished = render_cli(out, preexec_fn=limit_file_size(0))
    assert_stopped_cleanly(finished, out, before, "File too large")
    assert render_cli(out).returncode == 0, "once there is room, the rerun completes the dataset"
    assert_same_as_reference(out, reference)


def test_read_only_folder_stops_with_a_clear_error_and_keeps_complete_objects(reference, tmp_path):
    out = damaged_copy(reference, tmp_path)
    before = files_of(out)
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        finished = render_cli(out, preexec_fn=obey_permissions)
        assert_stopped_cleanly(finished, out, before, "Permission denied")
        assert OBJECTS[1].synset in finished.stderr, "the error names the folder it could not write"
        fresh = render_cli(out / "new", preexec_fn=obey_permissions)
        assert fresh.returncode == 1 and "Permission denied" in fresh.stderr
        assert "Traceback" not in fresh.stderr
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert render_cli(out).returncode == 0, "once writable, the rerun completes the dataset"
    assert_same_as_reference(out, reference)
    assert np.load(out / "train_images.npy").size + np.load(out / "val_images.npy").size == len(OBJECTS)
    assert (out / spec.MANIFEST_NAME).is_file()
    assert len(list(writer.object_dir(out, OBJECTS[1]).glob("image_*.jpg"))) == VIEWS
