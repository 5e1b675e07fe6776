"""`3die` with one process of a torchrun run unable to load its checkpoint: run under torchrun as
`rank_fault.py RANK 3die-ARGUMENTS...`; in the process whose RANK is the first argument, loading the run's
checkpoint raises an OSError (as a node whose copy of the run folder is unreadable), the others load it."""

import os
import sys

from benchmark.cli import main
from benchmark.train import loop


def fail_on(rank: str) -> None:
    load = loop.load_checkpoint

    def load_checkpoint(folder, *arguments, **options):
        if os.environ.get("RANK") == rank:
            raise OSError(f"[Errno 5] Input/output error: '{folder}' (injected on process {rank})")
        return load(folder, *arguments, **options)

    loop.load_checkpoint = load_checkpoint


if __name__ == "__main__":
    fail_on(sys.argv.pop(1))
    main(prog_name="3die")
