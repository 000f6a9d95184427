"""`swinface bench`: how fast SwinFace runs here, for each backend, beside plain eager float32.

Figures are throughput after warm-up, timed over at least `min_seconds` and
`min_iterations`; on CUDA every timing ends with a synchronisation.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from swinface.model import SwinFace

log = logging.getLogger(__name__)


@dataclass
class BenchRow:
    """One measurement: what ran, at which batch size, how fast."""

    what: str  # "model", "end-to-end", "training"
    backend: str
    precision: str
    batch: int
    per_second: float  # faces/s, photos/s or images/s
    latency_ms: float  # per batch
    ratio: float | None = None  # against the plain eager float32 run of the same batch


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {threads} threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 2,
    min_iterations: int = 3,
    min_seconds: float = 2.0,
) -> float:
    """Seconds per call, after warm-up."""
    for _ in range(warmup):
        fn()
    _sync(device)
    n, start = 0, time.perf_counter()
    while n < min_iterations or time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - start) / n


def bench_model(
    model: SwinFace,
    device: torch.device,
    backends: Sequence[str],
    batches: Sequence[int],
    *,
    min_seconds: float = 2.0,
) -> list[BenchRow]:
    """Model-only faces/s for each backend and batch, beside the plain eager float32 baseline.

    Every backend runs the model in eval mode, and the model is left as it was.
    A backend that resolves to the baseline itself (eager at float32, as on
    CPU) is timed once, as the baseline row.
    """
    from swinface.backends import create_backend, resolve_precision
    from swinface.model.borrowed import model_dtype

    rows = []
    rng = np.random.default_rng(0)
    dtype = model_dtype(model)
    runs: dict[tuple[str, str], str] = {("eager", "float32"): "float32"}
    for name in backends:
        # Keyed by what actually runs: 'eager' at 'auto' on CPU is the baseline again.
        resolved = "float32" if name == "onnxruntime" else resolve_precision("auto", device, dtype)
        runs.setdefault((name, resolved), "auto")
    made: dict[tuple[str, str], object] = {}
    for batch in batches:
        faces = torch.from_numpy(rng.integers(0, 256, (batch, 112, 112, 3), np.uint8))
        if device.type == "cuda":
            faces = faces.pin_memory()
        baseline = None
        for key, precision in runs.items():
            name = key[0]
            try:
                if key not in made:
                    made[key] = create_backend(name, model, device, precision)
                backend = made[key]
                seconds = time_call(
                    lambda b=backend, x=faces: b(x), device, min_seconds=min_seconds
                )
            except Exception as err:  # a backend that cannot run here is reported, not fatal
                log.warning("%s at batch %d could not run: %s", name, batch, err)
                continue
            row = BenchRow("model", name, backend.precision, batch, batch / seconds, seconds * 1e3)
            if key == ("eager", "float32"):
                baseline = row.per_second
                row.backend = "eager (baseline)"
            row.ratio = row.per_second / baseline if baseline else None
            rows.append(row)
    return rows


def bench_pipeline(
    analyzer, photo, *, photos_per_call: int = 8, min_seconds: float = 2.0
) -> BenchRow:
    """End to end: decode, detect, align and analyse the same photo many times."""
    from swinface.vision import load_image

    image = load_image(photo)
    device = analyzer.runner.device
    seconds = time_call(
        lambda: list(analyzer.analyze_many([image] * photos_per_call)),
        device,
        min_seconds=min_seconds,
        warmup=1,
    )
    return BenchRow(
        "end-to-end",
        analyzer.runner.backend.name,
        analyzer.runner.precision,
        photos_per_call,
        photos_per_call / seconds,
        seconds * 1e3,
    )


def bench_training(
    model_name: str,
    device: torch.device,
    batch_per_task: int,
    *,
    steps: int = 5,
    precision: str = "auto",
    workdir=None,
) -> BenchRow:
    """Training images/s: full steps (forward, four losses, Partial FC, backward, AdamW)."""
    import tempfile
    from pathlib import Path

    from swinface.data.store import StoreWriter
    from swinface.train.config import SourceConfig, TaskConfig, TrainConfig
    from swinface.train.trainer import DistEnv, Trainer

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        rng = np.random.default_rng(0)
        writer = StoreWriter(Path(tmp) / "store", capacity=64)
        for i in range(64):
            writer.add(
                rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
                f"{i}",
                identity=i % 16,
                age=float(20 + i % 50),
                gender=i % 2,
                expression=i % 7,
                attributes=rng.integers(0, 2, 40).astype(np.int8),
            )
        store = str(writer.close({}).path)
        tasks = {
            t: TaskConfig(batch_size=batch_per_task, sources=[SourceConfig(store)])
            for t in ("identity", "age_gender", "attributes", "expression")
        }
        config = TrainConfig(
            output_dir=str(Path(tmp) / "run"),
            model=model_name,
            steps=steps + 2,
            num_workers=0,
            augment=False,
            precision=precision,
            tasks=tasks,
        )
        trainer = Trainer(config, DistEnv(device=device))
        batches = [trainer.data[s] for s in range(2)]
        step = iter(range(10**9))
        seconds = time_call(
            lambda: trainer.train_step(batches[next(step) % 2]),
            device,
            warmup=2,
            min_iterations=steps,
            min_seconds=1.0,
        )
    images = 4 * batch_per_task
    return BenchRow("training", "eager", trainer.precision, images, images / seconds, seconds * 1e3)


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A plain table for the terminal and the README."""
    header = f"{'what':<11} {'backend':<17} {'precision':<9} {'batch':>5} {'per second':>11} {'ms/batch':>9} {'vs eager fp32':>13}"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(
            f"{r.what:<11} {r.backend:<17} {r.precision:<9} {r.batch:>5} {r.per_second:>11.1f} {r.latency_ms:>9.1f} {ratio:>13}"
        )
    return "\n".join(lines)
