"""Where a result comes from: the code version (package version, git commit, uncommitted changes), the
CPU model and the hardware of a run's sessions. Recorded by training (RUN/config.json) and evaluation
(RUN/results.json), and printed by the speed benchmarks."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from render import spec

#: The folders whose tracked files make up the code that produces results.
CODE_FOLDERS = ("render", "sie_models", "benchmark", "manifests", "pyproject.toml")


def code_version(root: Path = spec.REPO_ROOT) -> str:
    """The package version, with the git commit of the source tree when it is a git checkout and
    ".dirty" when tracked files of the toolkit differ from that commit (results a reviewer cannot rebuild
    from the commit alone)."""
    try:
        version = metadata.version("3die")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        changes = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_FOLDERS)
    except (OSError, subprocess.SubprocessError):
        return version
    if not commit:
        return version
    return f"{version}+g{commit}" + (".dirty" if changes else "")


def _git(root: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_description() -> str:
    """The CPU's model and core count: "AMD EPYC 7763 (2 cores)"."""
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def merged_sessions(earlier: str | None, current: str) -> str:
    """What every session of a run used (hardware, code version), in first-use order, joined by " + "."""
    sessions = earlier.split(" + ") if earlier else []
    return " + ".join(sessions if current in sessions else [*sessions, current])
