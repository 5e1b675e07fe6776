"""Locks between 3die processes: an exclusive `flock` on a lock file beside the files it guards.

`3die render` holds ROOT/.3die.lock while it writes a file at the dataset root and each object folder's
.claim while it renders the object (`render.writer`); `3die evaluate` holds RUN/.evaluate.lock for a
whole evaluation, `append_rows` holds .NAME.csv.lock beside a
leaderboard CSV while it reads, merges and writes it, and `3die pack` holds .NAME.h5.lock beside its output
while it writes FILE.partial. The lock is the kernel's, so it goes away with its process, even one killed
by SIGKILL: the lock file stays behind (it is never deleted, as another process may be waiting on it) and
never blocks anyone. It is opened read-write (O_RDWR | O_CREAT) because on NFS Linux emulates flock with a
byte-range lock over the whole file, which needs write access and which the server shares between hosts.
The holder writes "pid PID on HOST" into it, so that a process kept waiting can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

#: Bytes of the holder's line read back from a lock file.
HOLDER_BYTES = 256


class LockBusy(Exception):
    """Another process holds the lock at `path`; `holder` is what it wrote there ("pid PID on HOST" or "")."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path}: held by {holder or 'another process'}")
        self.path, self.holder = path, holder


@contextlib.contextmanager
def exclusive_lock(
    path: str | Path, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the exclusive lock on `path` (the file is created when missing) for the block.

    When another process holds it: with `wait`, `on_wait(holder)` is called once and the block starts when
    the other process lets go; without, LockBusy is raised at once. OSError when the file cannot be
    opened or locked (an unwritable folder, a file system without locks)."""
    path = Path(path)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            if not wait:
                raise LockBusy(path, holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        _write_holder(descriptor)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _read_holder(descriptor: int) -> str:
    try:
        return os.pread(descriptor, HOLDER_BYTES, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _write_holder(descriptor: int) -> None:
    """Record this process in the lock file; only said to waiters, so a full disk does not matter."""
    line = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
    with contextlib.suppress(OSError):
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, line, 0)
