"""Run by torchrun from test_training.py: training scenarios on each of several gloo ranks.

Usage: dist_worker.py SCENARIO:CONFIG ...; each scenario writes
`<output_dir>/rank<r>.json` (and `grads_rank<r>.pt`), or the error it met.
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
from pathlib import Path

import torch

from swinface.train.config import load_config
from swinface.train.trainer import Trainer, setup_distributed

# Partial FC's class centres for the gradient comparison, the same on every rank and in the
# single-process reference (each rank takes its shard's rows).
CENTRES_SEED = 123


def full_centres(num_classes: int, dim: int) -> torch.Tensor:
    return torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(CENTRES_SEED))


def _digest(trainer: Trainer) -> str:
    digest = hashlib.sha256()
    for _, p in sorted(trainer.model.named_parameters()):
        digest.update(p.detach().numpy().tobytes())
    return digest.hexdigest()


def steps(trainer: Trainer, rank: int) -> list[dict]:
    """A few training steps: the weights' digest and the losses after each."""
    records = []
    for step in range(trainer.config.steps):
        losses = trainer.train_step(trainer.data[step])
        records.append(
            {
                "step": trainer.step,
                "model": _digest(trainer),
                "loss": losses["loss"],
                "identity": losses.get("identity"),
                "shard_rows": trainer.partial_fc.num_local if trainer.partial_fc else 0,
                "frozen": sorted(
                    n for n, p in trainer.model.named_parameters() if not p.requires_grad
                ),
            }
        )
    return records


def gradients(trainer: Trainer, rank: int) -> list[dict]:
    """The gradients of step 0's batch (eval mode: BatchNorm statistics are per rank)."""
    pfc = trainer.partial_fc
    with torch.no_grad():
        full = full_centres(pfc.num_classes, pfc.weight.shape[1])
        pfc.weight.copy_(full[pfc.class_start : pfc.class_start + pfc.num_local])
    trainer.model.eval()
    trainer.forward_backward(trainer.data[0])
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    grads["partial_fc.weight"] = pfc.weight.grad
    torch.save(
        {"grads": grads, "class_start": pfc.class_start},
        Path(trainer.config.output_dir) / f"grads_rank{rank}.pt",
    )
    return []


SCENARIOS = {"steps": steps, "gradients": gradients}


def main() -> None:
    env = setup_distributed("cpu")
    for arg in sys.argv[1:]:
        scenario, config_path = arg.split(":", 1)
        config = load_config(config_path)
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        try:
            result = {"records": SCENARIOS[scenario](Trainer(config, env), env.rank)}
        except Exception:  # reported to the test, which names it; the next scenario still runs
            result = {"error": traceback.format_exc()}
        (out / f"rank{env.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
