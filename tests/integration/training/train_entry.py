"""Subprocess / torchrun entry of the training tests: `python train_entry.py '<json config>'`.

The JSON holds `TrainConfig` fields (paths as strings). Prints one JSON line with the result.
"""

import json
import sys
from pathlib import Path

from autolabel.tasks.training.distributed import shutdown_distributed
from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training


def main() -> None:
    fields = json.loads(sys.argv[1])
    fields["output"] = Path(fields["output"])
    if fields.get("checkpoint"):
        fields["checkpoint"] = Path(fields["checkpoint"])
    try:
        result = run_training(TrainConfig(**fields))
    finally:
        shutdown_distributed()
    summary = {
        "step": result.step, "losses": result.losses, "interrupted": result.interrupted,
        "bad_data": [b.name for b in result.bad_data],
        "weights": str(result.weights) if result.weights else None,
    }  # fmt: skip
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
