"""Worker processes that leave decisions to the process that started them and never outlive it.

`ProcessPoolExecutor` and `multiprocessing.Pool` workers wait for their next task on a pipe that they hold
open themselves, so a worker whose parent is killed (SIGKILL, the OOM killer, a SIGTERM without a handler)
waits forever, and a render worker holds a whole Blender. Every pool of 3die starts its workers with
`exit_with_parent`; render workers also ignore the signal that SLURM sends to every process of a job
step before its time limit (SIGUSR2, which submitit asks for), which the parent's handler (submitit's)
answers for the whole task, and a terminal's Ctrl-C (SIGINT), on which the parent terminates them. They
do not ignore SIGTERM: a pool terminates the workers of a broken pool with it, and a worker that went on
rendering would hold its object's claim against the retry.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

#: Signals a render worker ignores: SLURM's time-limit warning (submitit asks for SIGUSR2), SIGUSR1 (the
#: other common --signal choice) and SIGINT (a terminal's Ctrl-C reaches the whole process group); the
#: parent decides, and the worker then goes with it (on Ctrl-C the parent terminates its workers).
PARENT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)
#: Exit status of a worker whose parent has gone.
ORPHANED_EXIT = 70
#: Worker processes allowed per usable CPU core (`check_workers`): beyond it they only queue for the
#: cores, and a slip such as --workers 10000 would start ten thousand Blenders or decoders.
WORKERS_PER_CORE = 4


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a SLURM allocation, taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int, name: str = "--workers") -> None:
    """ValueError naming `name` when `workers` processes exceed WORKERS_PER_CORE per usable core."""
    cores = usable_cores()
    if workers > WORKERS_PER_CORE * cores:
        raise ValueError(
            f"{name} {workers} is more than {WORKERS_PER_CORE} processes per CPU core ({cores} usable "
            f"here); use at most {WORKERS_PER_CORE * cores}"
        )


def exit_with_parent() -> None:
    """In a worker process: exit at once (os._exit) when the parent process is gone.

    A daemon thread waits on the pipe that multiprocessing keeps open from the parent to each child
    (`multiprocessing.parent_process()`), which the kernel closes when the parent dies, so the worker
    leaves within moments of it, without polling. Its files are written atomically and its locks are the
    kernel's, so leaving mid-task is as safe as a SIGKILL. No-op in a process that multiprocessing did not
    start.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def wait_for_parent() -> None:
        parent.join()
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=wait_for_parent, name="exit-with-parent", daemon=True).start()


def leave_signals_to_parent() -> None:
    """In a worker process: ignore PARENT_SIGNALS, and exit with the parent (`exit_with_parent`)."""
    for number in PARENT_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    exit_with_parent()


def process_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user's counts: its slot stays taken)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_slot(holders, pid: int, alive=process_alive) -> int:
    """The first index of `holders` (a shared array of the PIDs holding each slot; 0: none) whose holder is
    gone, now held by `pid`; len(holders) when every holder lives. Call it holding the array's lock.

    A worker's slot picks its GPU (render.scene.use_gpu_slot): a replacement of a recycled or crashed
    worker takes the slot it left, so the live workers keep distinct GPUs whichever of them is replaced
    first (a count of workers started would put two on one GPU once the newer one is recycled first).
    """
    for index, holder in enumerate(holders):
        if holder == 0 or not alive(holder):
            holders[index] = pid
            return index
    return len(holders)
