"""Fault injection for the reliability tests: a render source that kills its run at a chosen point, child
processes under resource limits or without root's permission override, and file comparisons.

`FaultySource` is the procedural library; in the worker process that loads object `target` it injects
`fault`: "jpeg-write" kills the whole run (its process group) halfway through writing the JPEG of view 1,
"between-objects" kills it before the object is started (every earlier object is complete), "render-stop"
stops the worker (SIGSTOP, nothing resumes it) as Blender is about to render view STOP_VIEW, so that the
test kills the run from outside at a known point inside the object. The fault "root-write" with a file name
as target (`manifest.json`, `objects.csv`, `train_images.npy`, ...) kills the run in its main process when
that dataset file is written, between its temporary file and the rename.
With `log`, every worker appends "PID SYNSET/OBJECT_ID" to that file when it starts an object. Run this
file as a script (`python faults.py OUT --fault F --target ID`, see `main`) to render the test dataset
with such a source, or run `3die` itself with the source its options name swapped for such a source
(`faulty_cli_command`).
"""

from __future__ import annotations

import ctypes
import io
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from render.launch import RenderConfig, Shard, render_dataset
from render.sources import ProceduralSource

#: The test dataset: 2 classes x 1 object, 3 views of 32 px, draft quality, on the CPU.
CLASSES, PER_CLASS, VIEWS, SIZE, QUALITY = ("chair", "mug"), 1, 3, 32, "draft"
CLI_OPTIONS = [
    "--classes", ",".join(CLASSES), "--per-class", str(PER_CLASS), "--views", str(VIEWS),
    "--size", str(SIZE), "--quality", QUALITY, "--device", "cpu",
]  # fmt: skip
#: Linux capabilities that let root ignore file permissions (linux/capability.h) and prctl's
#: PR_CAPBSET_DROP: without them in the bounding set, root's processes obey chmod like anyone's.
PERMISSION_OVERRIDES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
PR_CAPBSET_DROP = 24
#: The view before whose render the "render-stop" fault stops the worker: view 0 is on disk by then (the
#: background writer holds at most 2 views), the object is not complete.
STOP_VIEW = 3


@dataclass(frozen=True)
class FaultySource(ProceduralSource):
    """The procedural library with one injected fault (see the module docstring); manifest.json records it
    exactly as the plain library, so a plain `3die render` resumes its dataset."""

    fault: str = ""
    target: str = ""
    log: str = ""

    def load(self, obj):
        if self.log:
            with open(self.log, "a") as handle:
                handle.write(f"{os.getpid()} {obj.key}\n")
        if obj.object_id == self.target:
            inject(self.fault)
        return super().load(obj)


def inject(fault: str) -> None:
    """Kill the run now ("between-objects"), arm the kill inside the next JPEG write but one, or arm the
    stop before view STOP_VIEW renders ("render-stop")."""
    if fault == "between-objects":
        os.killpg(0, signal.SIGKILL)
    elif fault == "jpeg-write":
        arm_jpeg_kill(after=1)
    elif fault == "render-stop":
        arm_render_stop(before=STOP_VIEW)
    else:
        raise ValueError(f"unknown fault {fault!r}")


def arm_jpeg_kill(after: int) -> None:
    """Let `after` JPEG saves through, then write half of the next JPEG's bytes and kill the process group."""
    from PIL import Image

    original, saves = Image.Image.save, []

    def save(image, fp, format=None, **params):
        if format != "JPEG" or len(saves) < after:
            saves.append(1)
            return original(image, fp, format=format, **params)
        encoded = io.BytesIO()
        original(image, encoded, format=format, **params)
        data = encoded.getvalue()
        fp.write(data[: len(data) // 2])
        fp.flush()
        os.killpg(0, signal.SIGKILL)

    Image.Image.save = save


def arm_render_stop(before: int) -> None:
    """Let `before` views of the object this worker is starting render, then stop this process (SIGSTOP) as
    the next one is about to render; it stays stopped until a signal from outside continues or kills it.
    The patch ends when the object is marked complete, so later objects render as usual."""
    from render import writer
    from render.scene import Scene

    original_render, original_finish, renders = Scene.render, writer.finish_object, []

    def render(scene):
        if len(renders) == before:
            os.kill(os.getpid(), signal.SIGSTOP)
        renders.append(1)
        return original_render(scene)

    def finish_object(folder, views):
        Scene.render, writer.finish_object = original_render, original_finish
        return original_finish(folder, views)

    Scene.render, writer.finish_object = render, finish_object


def arm_root_write_kill(name: str) -> None:
    """Kill the process group when a file called `name` is about to be renamed into place: its content is
    complete under its temporary name, which the kill leaves behind (atomic writes end in os.replace)."""
    original = os.replace

    def replace(source, destination, **options):
        if Path(destination).name == name:
            os.killpg(0, signal.SIGKILL)
        return original(source, destination, **options)

    os.replace = replace


def plain_source() -> ProceduralSource:
    return ProceduralSource(CLASSES, PER_CLASS, seed=0)


def render_config(out: Path) -> RenderConfig:
    """The RenderConfig that `3die render --out OUT *CLI_OPTIONS` builds."""
    return RenderConfig(Path(out), VIEWS, SIZE, QUALITY, seed=0, device="cpu")


def child_command(*arguments: str) -> list[str]:
    """A command running this file as a script with `arguments`."""
    return [sys.executable, str(Path(__file__)), *arguments]


def cli_command(*arguments: str) -> list[str]:
    """The `3die` command line with `arguments`, in a fresh interpreter."""
    return [sys.executable, "-c", "from benchmark.cli import main; main()", *arguments]


def faulty_cli_command(fault: str, target: str, log: str, *arguments: str) -> list[str]:
    """The `3die` command line with `arguments`, in a fresh interpreter where the render's source is the
    FaultySource of the procedural source the options name (see `run_cli_with_fault`)."""
    script = f"import faults; faults.run_cli_with_fault({fault!r}, {target!r}, {log!r})"
    return [sys.executable, "-c", script, *arguments]


def run_cli_with_fault(fault: str, target: str, log: str) -> None:
    """Run `3die` on sys.argv with `render_dataset` given, instead of its procedural source, the same
    source as a FaultySource that injects `fault` into object `target` and logs to `log`."""
    from render import launch

    render_dataset = launch.render_dataset

    def render_with_fault(config, source, *arguments, **options):
        settings = {item.name: getattr(source, item.name) for item in fields(source) if item.init}
        faulty = FaultySource(**settings, fault=fault, target=target, log=log)
        return render_dataset(config, faulty, *arguments, **options)

    launch.render_dataset = render_with_fault
    from benchmark.cli import main

    main(prog_name="3die")


def child_env() -> dict[str, str]:
    """The environment of a child: this folder importable, one thread per library."""
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def limit_file_size(limit: int):
    """A preexec_fn: files written may not grow beyond `limit` bytes; a write past it fails with EFBIG
    (SIGXFSZ, which would kill the process instead, is ignored), as on a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def obey_permissions() -> None:
    """A preexec_fn: drop root's permission overrides (nothing to drop for other users), so that a
    folder without write permission is read-only for the child and its workers."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in PERMISSION_OVERRIDES:
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def wait_for_stopped_worker(run: subprocess.Popen, log: Path, key: str, timeout: float = 120) -> int:
    """The PID of the worker that `log` says started object `key`, once that process is stopped (state T in
    /proc); AssertionError when the run (started with stderr=PIPE) ends first, or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise AssertionError(f"the run ended before its worker stopped: {run.stderr.read()[-3000:]!r}")
        lines = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
        workers = [int(words[0]) for words in lines if words[1:] == [key]]
        if workers and process_state(workers[-1]) == "T":
            return workers[-1]
        time.sleep(0.01)
    raise AssertionError(f"no worker stopped on {key} within {timeout} s")


def process_state(pid: int) -> str:
    """The state letter of process `pid` in /proc/PID/stat (R running, S sleeping, T stopped, ...); "" when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def files_of(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under `root`."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def main(arguments: list[str]) -> None:
    """OUT [--fault F --target ID] [--log FILE] [--shard K/N] [--workers W]: render the test dataset."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--fault", default="")
    parser.add_argument("--target", default="")
    parser.add_argument("--log", default="")
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args(arguments)
    if options.fault == "root-write":  # in this process, which writes the dataset files; not in a worker
        arm_root_write_kill(options.target)
        options.fault = options.target = ""
    source = FaultySource(CLASSES, PER_CLASS, 0, fault=options.fault, target=options.target, log=options.log)
    config = render_config(options.out)
    render_dataset(config, source, shard=Shard.parse(options.shard), workers=options.workers, progress=False)


if __name__ == "__main__":
    import faults  # the classes workers unpickle must come from the module, not from __main__

    faults.main(sys.argv[1:])
