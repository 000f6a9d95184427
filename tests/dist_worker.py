"""Run by torchrun from test_training.py: a few steps on each rank, then the weights' digests."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from swinface.train.config import load_config
from swinface.train.trainer import Trainer, setup_distributed


def main() -> None:
    config = load_config(sys.argv[1])
    env = setup_distributed("cpu")
    trainer = Trainer(config, env)
    records = []
    for step in range(config.steps):
        losses = trainer.train_step(trainer.data[step])
        digest = hashlib.sha256()
        for _, p in sorted(trainer.model.named_parameters()):
            digest.update(p.detach().numpy().tobytes())
        records.append(
            {
                "step": trainer.step,
                "model": digest.hexdigest(),
                "loss": losses["loss"],
                "identity": losses["identity"],
                "shard_rows": trainer.partial_fc.num_local,
            }
        )
    out = Path(config.output_dir) / f"rank{env.rank}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records))


if __name__ == "__main__":
    main()
