"""Running renders: shards, determinism across shard counts, failures, worker crashes, SLURM job
construction (submitit's debug executor). Renders are tiny (16 px, 2 views, 4 samples)."""

import json
import os
import shutil
import signal
import sys
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from render import launch, spec, writer
from render.check import check_dataset
from render.launch import (
    CRASHES_BEFORE_FAILURE,
    RECYCLE_EVERY,
    WORKER_DIED,
    ObjectOutcome,
    RenderConfig,
    RunSummary,
    Shard,
    SlurmOptions,
    estimate_jobs,
    pending_objects,
    render_dataset,
    settle_after_crash,
    shard_index,
    submit_slurm,
    threads_per_worker,
)
from render.sampling import object_latents
from render.sources import MeshDirSource, ObjectSpec, ProceduralSource

SOURCE = ProceduralSource(("chair", "mug"), per_class=2, seed=0)


def config(out, **overrides):
    settings = {"views": 2, "size": 16, "quality": "draft", "device": "cpu"} | overrides
    return RenderConfig(out, **settings)


def latents_on_disk(root):
    return {str(path.relative_to(root)): np.load(path) for path in sorted(root.glob("*/*/latent_*.npy"))}


def test_shards_are_disjoint_covering_and_order_free():
    objects = [ObjectSpec("s", f"o{i}", 0, "train", "procedural") for i in range(200)]
    shards = [Shard(k, 3) for k in range(3)]
    members = [{o.key for o in objects if shard.holds(o)} for shard in shards]
    assert sum(len(m) for m in members) == len(objects)
    assert set.union(*members) == {o.key for o in objects}
    assert all(len(m) > 40 for m in members)
    assert shard_index(objects[7], 3) == shard_index(ObjectSpec("s", "o7", 5, "val", "mesh-dir"), 3)
    assert Shard.parse("2/3") == Shard(2, 3) == Shard.parse(" 2 / 3 ")
    for text in ("3/3", "1", "a/b", "-1/2", "1_0/20", "+1/2", "²/3", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(text)


def test_threads_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert threads_per_worker(1) == cores and threads_per_worker(cores * 4) == 1


@pytest.mark.slow  # renders
def test_latents_do_not_depend_on_the_shard_count(tmp_path):
    one = render_dataset(config(tmp_path / "one"), SOURCE, progress=False)
    assert one.rendered == 4 and one.images == 8 and one.splits == {"train": 2, "val": 2}
    halves = [
        render_dataset(config(tmp_path / "two"), SOURCE, shard=Shard(k, 2), progress=False) for k in (0, 1)
    ]
    assert sorted(h.rendered for h in halves) == sorted(h.in_shard for h in halves)
    assert sum(h.rendered for h in halves) == 4 and halves[1].splits == {"train": 2, "val": 2}
    single, sharded = latents_on_disk(tmp_path / "one"), latents_on_disk(tmp_path / "two")
    assert single.keys() == sharded.keys() and len(single) == 8
    for name, latent in single.items():
        np.testing.assert_array_equal(latent, sharded[name])
    for obj in SOURCE.objects():
        expected = object_latents(0, obj.synset, obj.object_id, views=2)
        folder = writer.object_dir(tmp_path / "one", obj)
        np.testing.assert_array_equal(
            np.stack([np.load(folder / spec.latent_name(v)) for v in (0, 1)]), expected
        )
    assert check_dataset(tmp_path / "two").ok
    again = render_dataset(config(tmp_path / "one"), SOURCE, progress=False)
    assert again.rendered == 0 and again.skipped == 4


@pytest.mark.slow  # renders
def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    render_dataset(config(tmp_path), SOURCE, limit=1, progress=False)
    other_views = r"rendered with other settings \(settings.views: 2 -> 3\); rerun"
    with pytest.raises(writer.DatasetMismatchError, match=other_views):
        render_dataset(config(tmp_path, views=3), SOURCE, limit=1, progress=False)
    with pytest.raises(writer.DatasetMismatchError, match=r"\(objects: 1 -> 2\)"):
        render_dataset(config(tmp_path), SOURCE, limit=2, progress=False)
    # same options, same count, but the objects file now lists another object
    objects_csv = tmp_path / "chosen.csv"
    header = "synset,object_id,label,split,source\n"
    objects_csv.write_text(header + "03001627,chair-s0-i00000,0,train,procedural\n")
    chosen = ProceduralSource(objects_file=objects_csv)
    render_dataset(config(tmp_path / "chosen"), chosen, progress=False)
    objects_csv.write_text(header + "03001627,chair-s0-i00001,0,train,procedural\n")
    with pytest.raises(writer.DatasetMismatchError, match="another object list"):
        render_dataset(config(tmp_path / "chosen"), chosen, progress=False)


@pytest.mark.slow  # renders
def test_a_moved_source_resumes_but_another_source_is_refused(tmp_path):
    meshes = tmp_path / "meshes" / "thing"
    meshes.mkdir(parents=True)
    for name, extents in (("a", (0.3, 0.5, 0.8)), ("b", (0.8, 0.2, 0.4))):
        trimesh.creation.box(extents).export(meshes / f"{name}.ply")
    out = tmp_path / "out"
    first = render_dataset(config(out), MeshDirSource(tmp_path / "meshes"), progress=False)
    unfinished = writer.object_dir(out, ObjectSpec("thing", "b", 0, "train", "mesh-dir"))
    (unfinished / writer.COMPLETE_MARKER).unlink()
    moved = tmp_path / "elsewhere"
    (tmp_path / "meshes").rename(moved)  # e.g. another mount point on another node
    second = render_dataset(config(out), MeshDirSource(moved), progress=False)
    assert (first.rendered, second.skipped, second.rendered) == (2, 1, 1)
    assert check_dataset(out).ok
    assert writer.read_manifest(out)["source"]["root"] == str(tmp_path / "meshes")  # the first run's
    with pytest.raises(writer.DatasetMismatchError, match="source"):
        render_dataset(config(out), MeshDirSource(moved, up_axis="y"), progress=False)
    with pytest.raises(writer.DatasetMismatchError, match="source"):
        render_dataset(config(out), SOURCE, progress=False)


@pytest.mark.slow  # renders
def test_broken_meshes_go_to_failures_and_the_run_goes_on(tmp_path):
    meshes = tmp_path / "meshes" / "thing"
    meshes.mkdir(parents=True)
    trimesh.creation.box((0.3, 0.5, 0.8)).export(meshes / "good.ply")
    (meshes / "broken.obj").write_text("garbage here\nv 1 2\n")
    (meshes / "empty.stl").write_text("")
    out = tmp_path / "out"
    summary = render_dataset(config(out), MeshDirSource(tmp_path / "meshes"), progress=False)
    assert (summary.rendered, summary.failed) == (1, 2)
    failures = writer.read_failures(out)
    assert set(failures) == {"thing/broken", "thing/empty"}
    assert "broken.obj" in failures["thing/broken"] and "empty.stl" in failures["thing/empty"]
    report = check_dataset(out)
    assert report.ok and len(report.failures) == 2
    assert np.load(out / "train_images.npy").tolist() + np.load(out / "val_images.npy").tolist() == [
        "/thing/good/"
    ]
    again = render_dataset(config(out), MeshDirSource(tmp_path / "meshes"), progress=False)
    assert (again.skipped, again.failed_before) == (3, 2)
    retried = render_dataset(
        config(out), MeshDirSource(tmp_path / "meshes"), retry_failed=True, progress=False
    )
    assert (retried.failed, retried.failed_before) == (2, 0)
    lines = [json.loads(line) for line in (out / spec.FAILURES_NAME).read_text().splitlines()]
    assert len(lines) == 4 and writer.read_failures(out) == failures


@dataclass(frozen=True)
class CrashingSource(ProceduralSource):
    """The procedural library, except that loading `crash_id` kills the worker process outright, as a
    Blender segfault would."""

    crash_id: str = ""

    def load(self, obj):
        if obj.object_id == self.crash_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().load(obj)


@pytest.mark.slow  # renders
def test_an_object_that_kills_its_worker_is_recorded_and_the_rest_render(tmp_path):
    objects = SOURCE.objects()
    source = CrashingSource(("chair", "mug"), per_class=2, seed=0, crash_id=objects[1].object_id)
    summary = render_dataset(config(tmp_path), source, workers=2, progress=False)
    assert (summary.rendered, summary.failed) == (3, 1)
    assert "worker died" in writer.read_failures(tmp_path)[objects[1].key]
    assert pending_objects(tmp_path, objects) == []
    assert check_dataset(tmp_path).ok


@dataclass(frozen=True)
class LoggingSource(ProceduralSource):
    """The procedural library, writing "PID OBJECT_ID" to `log` as a worker loads each object."""

    log: str = ""

    def load(self, obj):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()} {obj.object_id}\n")
        return super().load(obj)


@pytest.mark.slow  # renders
@pytest.mark.parametrize(("recycle_every", "processes"), [(1, 3), (3, 1)])
def test_a_worker_is_replaced_after_recycle_every_objects(recycle_every, processes, tmp_path):
    """--recycle-every N: a worker process renders N objects, then a fresh one (a new Blender) takes over."""
    log = tmp_path / "loads.log"
    source = LoggingSource(("chair", "mug", "lamp"), per_class=1, seed=0, log=str(log))
    out = tmp_path / "data"
    summary = render_dataset(config(out), source, workers=1, recycle_every=recycle_every, progress=False)
    assert summary.rendered == 3 and check_dataset(out).ok
    loads = [line.split() for line in log.read_text().splitlines()]
    assert sorted(key for _, key in loads) == sorted(obj.object_id for obj in source.objects())
    assert len({pid for pid, _ in loads}) == processes
    assert str(os.getpid()) not in {pid for pid, _ in loads}, "objects load in worker processes"


def future_with(result=None, error=None) -> Future:
    future = Future()
    future.set_running_or_notify_cancel()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


def test_after_a_crash_finished_objects_count_and_the_others_are_retried_then_failed():
    finished, crashed, pending = SOURCE.objects()[:3]
    in_flight = {
        future_with(ObjectOutcome(finished.key, views=2)): finished,  # done as the pool broke
        future_with(error=BrokenProcessPool("a worker died")): crashed,
        future_with(error=BrokenProcessPool("a worker died")): pending,
    }
    crashes, suspects = {pending.key: CRASHES_BEFORE_FAILURE - 1}, []
    outcomes = settle_after_crash(in_flight, crashes, suspects)
    assert outcomes == [
        (finished, ObjectOutcome(finished.key, views=2)),
        (pending, ObjectOutcome(pending.key, failure=WORKER_DIED)),
    ]
    assert suspects == [crashed] and crashes == {crashed.key: 1, pending.key: CRASHES_BEFORE_FAILURE}


def test_after_a_crash_an_object_its_worker_completed_counts_as_rendered_not_crashed():
    """The pool broke after the worker wrote the object and before it handed back the result."""
    completed, crashed = SOURCE.objects()[:2]
    in_flight = {
        future_with(error=BrokenProcessPool("a worker died")): completed,
        future_with(error=BrokenProcessPool("a worker died")): crashed,
    }
    crashes, suspects = {completed.key: CRASHES_BEFORE_FAILURE - 1}, []

    def finished(obj):
        return ObjectOutcome(obj.key, views=2) if obj is completed else None

    outcomes = settle_after_crash(in_flight, crashes, suspects, finished)
    assert outcomes == [(completed, ObjectOutcome(completed.key, views=2))]
    assert suspects == [crashed] and crashes[completed.key] == CRASHES_BEFORE_FAILURE - 1


def test_a_replacement_worker_takes_the_gpu_slot_its_predecessor_left():
    """Slots are taken by the live workers' PIDs: whichever worker is recycled first, its replacement
    takes its slot (a count of workers started put two workers on one GPU)."""
    from render.processes import take_slot

    holders, live = [0, 0], set()

    def alive(pid):
        return pid in live

    for pid in (101, 102):
        live.add(pid)
        assert take_slot(holders, pid, alive) == pid - 101
    live.discard(102)  # the newer worker is recycled first
    live.add(103)
    assert take_slot(holders, 103, alive) == 1 and holders == [101, 103]
    live.discard(101)
    live.add(104)
    assert take_slot(holders, 104, alive) == 0 and holders == [104, 103]
    live.add(105)
    assert take_slot(holders, 105, alive) == 2, "no free slot: past the end (GPU slot % count)"


class SimulatedPool:
    """Stands in for the worker pool: futures complete when `wait` is called, and a batch in flight that
    holds a crashing object breaks the pool (every future in flight fails, as with a dead worker), as does
    a `submit` after `broken_at` submissions (the pool broke between a result and the refill)."""

    def __init__(self, crashing: set[str], broken_at: int | None = None):
        self.crashing, self.broken_at = crashing, broken_at
        self.submitted, self.batches, self.live = [], [], {}

    def __call__(self, **_):  # the executor class
        self.live.clear()
        return self

    def submit(self, function, obj):
        if self.broken_at is not None and len(self.submitted) == self.broken_at:
            self.broken_at = None
            raise BrokenProcessPool("a worker died")
        self.submitted.append(obj.key)
        future = Future()
        future.set_running_or_notify_cancel()
        self.live[future] = obj
        return future

    def wait(self, futures, return_when):
        batch = [self.live[future] for future in futures]
        self.batches.append({obj.key for obj in batch})
        broken = any(obj.key in self.crashing for obj in batch)
        for future, obj in zip(futures, batch, strict=True):
            if broken:
                future.set_exception(BrokenProcessPool("a worker died"))
            else:
                future.set_result(ObjectOutcome(obj.key, views=1))
        return set(futures), set()

    def shutdown(self, **_):
        pass


def run_simulated(monkeypatch, tmp_path, pool: SimulatedPool) -> RunSummary:
    monkeypatch.setattr(launch, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(launch, "wait", pool.wait)
    summary = RunSummary()
    launch._render_with_workers(config(tmp_path), SOURCE, SOURCE.objects(), 2, 200, False, summary)
    return summary


def test_a_crash_never_counts_against_an_object_that_was_not_retried_alone(monkeypatch, tmp_path):
    innocent, first, second, last = SOURCE.objects()  # first and second kill their worker at once
    pool = SimulatedPool({first.key, second.key})
    summary = run_simulated(monkeypatch, tmp_path, pool)
    assert (summary.rendered, summary.failed) == (2, 2)
    assert set(writer.read_failures(tmp_path)) == {first.key, second.key}
    # after each crash, the objects that were in flight are retried one at a time, nothing beside them
    keys = [{obj.key} for obj in (innocent, first, second, last)]
    assert pool.batches == [keys[0] | keys[1], keys[1], keys[0], keys[2] | keys[3], keys[3], keys[2]]


def test_an_object_whose_submission_finds_the_pool_broken_is_still_rendered(monkeypatch, tmp_path):
    pool = SimulatedPool(set(), broken_at=2)  # the refill after the first two results
    summary = run_simulated(monkeypatch, tmp_path, pool)
    assert (summary.rendered, summary.failed) == (4, 0)
    assert sorted(pool.submitted) == sorted(obj.key for obj in SOURCE.objects())


def test_the_default_job_count_gives_each_array_task_about_500_objects():
    assert [estimate_jobs(n) for n in (0, 1, 500, 501, 1001, 52_472)] == [1, 1, 1, 2, 3, 105]


@pytest.mark.slow  # renders
def test_slurm_array_runs_one_shard_per_task(tmp_path):
    options = SlurmOptions(
        jobs=2, partition="gpu", time_min=30, gpus=1, cpus=2, array_parallelism=2, mem_gb=4
    )
    parameters = options.parameters()
    assert parameters["slurm_partition"] == "gpu" and parameters["timeout_min"] == 30
    assert parameters["slurm_array_parallelism"] == 2 and parameters["gpus_per_node"] == 1
    assert parameters["mem_gb"] == 4 and parameters["slurm_srun_args"] == ["--cpus-per-task", "2"]
    auto = config(tmp_path / "gpu", device="auto")
    on_gpus = submit_slurm(auto, SOURCE, options, cluster="debug", retry_failed=True)
    task = on_gpus[0].submission().function
    assert task.config.device == "gpu" and task.retry_failed and task.recycle_every == RECYCLE_EVERY
    out = tmp_path / "out"
    on_cpus = replace(options, gpus=0)
    jobs = submit_slurm(config(out), SOURCE, on_cpus, cluster="debug", recycle_every=1)
    assert (out / spec.MANIFEST_NAME).is_file() and (out / spec.OBJECTS_CSV_NAME).is_file()
    assert [job.submission().function.shard for job in jobs] == [Shard(0, 2), Shard(1, 2)]
    assert [job.submission().function.config.device for job in jobs] == ["cpu", "cpu"]  # as given
    assert jobs[0].submission().function.recycle_every == 1
    # preempted or timed out, a task is requeued with the same shard (and resumes from the folder)
    assert jobs[0].submission().function.checkpoint().function.shard == Shard(0, 2)
    results = [job.result() for job in jobs]
    assert sum(r.rendered for r in results) == 4 and sum(r.in_shard for r in results) == 4
    assert check_dataset(out).ok
    assert len(latents_on_disk(out)) == 8
    # a resubmission sends only the shards with objects left, and none when all are done
    (out / "train_images.npy").unlink()
    assert submit_slurm(config(out), SOURCE, on_cpus, cluster="debug") == []
    assert (out / "train_images.npy").is_file() and check_dataset(out).ok, "the split files are written here"
    missing = SOURCE.objects()[1]
    shutil.rmtree(writer.object_dir(out, missing))
    (again,) = submit_slurm(config(out), SOURCE, on_cpus, cluster="debug")
    assert again.submission().function.shard == Shard(shard_index(missing, 2), 2)
    assert again.result().rendered == 1 and check_dataset(out).ok


@pytest.mark.slow  # renders
def test_shapenet_layout_renders_with_shapenet_labels(tmp_path, scene):
    """Also: workers start even when this (parent) process has imported bpy (the `scene` fixture), which
    puts Blender's script folders on the sys.path that spawned workers inherit."""
    import sys

    from render.procedural import export

    assert "bpy" in sys.modules
    from render.sources import ShapeNetSource

    export.export_library(tmp_path / "shapenet", ["chair", "mug"], per_class=1, seed=0)
    summary = render_dataset(config(tmp_path / "out"), ShapeNetSource(tmp_path / "shapenet"), progress=False)
    assert (summary.rendered, summary.failed) == (2, 0), writer.read_failures(tmp_path / "out")
    images, labels = (
        np.load(tmp_path / "out" / "train_images.npy"),
        np.load(tmp_path / "out" / "train_labels.npy"),
    )
    by_synset = {s.synset: s.label for s in spec.shapenet_synsets()}
    assert [by_synset[key.split("/")[1]] for key in images] == labels.tolist()  # chair 3001627, mug 3797390
    assert check_dataset(tmp_path / "out").ok


def fake_slurm(folder, sbatch_error: str | None = None):
    """A folder for PATH with an `srun` (so submitit sees SLURM) and an `sbatch` that refuses every job with
    `sbatch_error` on stderr, or, without one, keeps the batch script it is given as FOLDER/submitted.sh
    and answers as SLURM does (job 4242)."""
    folder.mkdir()
    accept = f'for a in "$@"; do last="$a"; done\ncp "$last" {folder}/submitted.sh\n'
    accept += 'echo "Submitted batch job 4242"'
    sbatch = accept if sbatch_error is None else f"echo '{sbatch_error}' >&2; exit 1"
    for name, script in (("srun", "exit 0"), ("sbatch", sbatch)):
        (folder / name).write_text(f"#!/bin/sh\n{script}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.slow  # renders
def test_a_slurm_job_array_from_sbatch_to_the_finished_dataset(tmp_path):
    """The real SLURM executor: the batch script sbatch receives, then each array task run as SLURM runs it
    (`python -m submitit.core._submit` in a fresh process with the task's SLURM variables)."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from benchmark.cli import main

    bin_folder, out = fake_slurm(tmp_path / "bin"), tmp_path / "out"
    command = [
        "render", "--out", str(out), "--classes", "chair,mug", "--per-class", "2", "--views", "2", "--size",
        "16", "--quality", "draft", "--slurm", "--jobs", "2", "--partition", "cpu", "--time", "30", "--gpus",
        "0", "--cpus-per-task", "1", "--array-parallelism", "1",
    ]  # fmt: skip
    submitted = CliRunner().invoke(main, command, env={"PATH": f"{bin_folder}:{os.environ['PATH']}"})
    assert submitted.exit_code == 0, submitted.output
    assert "submitted 2 array tasks" in submitted.output and "(job 4242)" in submitted.output
    script = (bin_folder / "submitted.sh").read_text().splitlines()
    for line in ("--array=0-1%1", "--partition=cpu", "--time=30", "--cpus-per-task=1", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script
    assert not any("gpu" in line for line in script), "no GPU request on a CPU partition"
    assert not check_dataset(out).ok, "nothing rendered before the tasks run"
    for task in (0, 1):
        slurm = {
            "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": f"424{task + 3}", "SLURM_ARRAY_JOB_ID": "4242",
            "SLURM_ARRAY_TASK_ID": str(task), "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0",
            "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost",
        }  # fmt: skip
        ran = subprocess.run(
            [sys.executable, "-m", "submitit.core._submit", str(out / ".slurm" / f"4242_{task}")],
            env={**os.environ, **slurm, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        logs = ran.stdout + ran.stderr
        assert ran.returncode == 0 and "Job completed successfully" in logs, logs[-3000:]
    assert check_dataset(out).ok and len(latents_on_disk(out)) == 8


def test_slurm_without_slurm_or_refused_by_sbatch_is_one_line(tmp_path):
    """Without SLURM, --slurm used to start every array task on this machine, in the background."""
    from click.testing import CliRunner

    from benchmark.cli import main

    out = tmp_path / "out"
    command = ["render", "--out", str(out), "--classes", "chair", "--per-class", "1", "--slurm"]
    no_slurm = CliRunner().invoke(main, command, env={"PATH": str(tmp_path / "empty")})
    assert no_slurm.exit_code == 1 and isinstance(no_slurm.exception, SystemExit)
    assert "Error: --slurm: no SLURM on this machine" in no_slurm.output
    assert not out.exists(), "nothing written, nothing started"

    refusal = "sbatch: error: invalid partition specified: nosuch"
    bin_folder = fake_slurm(tmp_path / "bin", refusal)
    with_slurm = {"PATH": f"{bin_folder}:{os.environ['PATH']}"}
    both = CliRunner().invoke(main, [*command, "--shard", "0/2"], env=with_slurm)
    assert both.exit_code == 1 and "--shard and --slurm do not go together" in both.output
    refused = CliRunner().invoke(main, [*command, "--partition", "nosuch", "--mem-gb", "8"], env=with_slurm)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.output
    assert refused.output.strip() == f"Error: sbatch refused the job array: {refusal}"


@pytest.mark.slow  # renders
def test_every_rendered_view_shows_the_pose_and_floor_of_its_own_latent(tmp_path):
    """Through the whole pipeline (source, worker, writer), each image_i.jpg is rendered with latent_i.npy:
    a red marker at one end of a bar lands where scipy's extrinsic XYZ rotation of that latent puts it, and
    the far floor has that latent's floor hue."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_scene import corner_hue, pinhole_pixel, red_centroid

    bar = trimesh.creation.box((0.6, 0.12, 0.12))
    bar.visual.face_colors = [128, 128, 128, 255]
    marker = trimesh.creation.box((0.12, 0.12, 0.12))
    marker.apply_translation((0.36, 0.0, 0.0))
    marker.visual.face_colors = [255, 0, 0, 255]
    (tmp_path / "meshes" / "bar").mkdir(parents=True)
    trimesh.util.concatenate([bar, marker]).export(tmp_path / "meshes" / "bar" / "marker.ply")
    # the marker's centre once the source normalises the mesh (bounding-box centre at 0, diagonal 1)
    low, high = np.array([-0.3, -0.06, -0.06]), np.array([0.42, 0.06, 0.06])
    centre = (np.array([0.36, 0.0, 0.0]) - (low + high) / 2) / np.linalg.norm(high - low)
    out, size = tmp_path / "out", 64
    summary = render_dataset(
        config(out, views=4, size=size, quality="fast"), MeshDirSource(tmp_path / "meshes"), progress=False
    )
    assert summary.rendered == 1, summary
    (folder,) = (path for path in out.glob("bar/*") if path.is_dir())
    for view in range(4):
        latent = np.load(folder / spec.latent_name(view))
        image = np.asarray(Image.open(folder / spec.image_name(view)).convert("RGB"))
        expected = pinhole_pixel(Rotation.from_euler("xyz", latent[spec.ROTATION]).apply(centre), size)
        assert np.linalg.norm(red_centroid(image) - expected) < 0.05 * size, (view, latent)
        hue, _ = corner_hue(image)
        assert abs((hue - latent[spec.FLOOR_HUE] + 0.5) % 1.0 - 0.5) < 0.05, (view, hue, latent)
