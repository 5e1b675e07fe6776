"""`render.locks`: an exclusive lock between processes that names its holder and dies with it."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from render.locks import LockBusy, exclusive_lock

HOLDER = """
import sys
from render.locks import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(path) -> subprocess.Popen:
    """A process holding the lock at `path` until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_held_by_another_process_is_refused_or_waited_for_naming_it(tmp_path):
    path = tmp_path / ".lock"
    holder = _hold(path)
    try:
        with pytest.raises(LockBusy) as busy, exclusive_lock(path, wait=False):
            pass
        assert busy.value.holder == f"pid {holder.pid} on {socket.gethostname()}"
        waited, entered = [], threading.Event()

        def take_the_lock():
            with exclusive_lock(path, on_wait=waited.append):
                entered.set()

        waiting = threading.Thread(target=take_the_lock)
        waiting.start()
        assert not entered.wait(1), "the lock is taken while the other process holds it"
        assert waited == [f"pid {holder.pid} on {socket.gethostname()}"]
    finally:
        holder.communicate("", timeout=30)
    waiting.join(timeout=30)
    assert entered.is_set() and path.read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"


def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    path = tmp_path / ".lock"
    holder = _hold(path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with exclusive_lock(path, wait=False):
        assert path.exists()
