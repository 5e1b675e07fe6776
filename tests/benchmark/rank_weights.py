"""`3die` under torchrun, each process saving the weights it ends with: run as
`rank_weights.py FOLDER 3die-ARGUMENTS...`; when training returns, process RANK writes its method's
state_dict to FOLDER/rank-RANK.pt, so that a test can compare what the processes hold."""

import os
import sys
from pathlib import Path

import torch

from benchmark.cli import main
from benchmark.train import loop


def keep_weights(folder: Path) -> None:
    run = loop.Trainer.run

    def run_and_keep(self, *arguments, **options):
        result = run(self, *arguments, **options)
        torch.save(self.method.state_dict(), folder / f"rank-{os.environ['RANK']}.pt")
        return result

    loop.Trainer.run = run_and_keep


if __name__ == "__main__":
    keep_weights(Path(sys.argv.pop(1)))
    main(prog_name="3die")
