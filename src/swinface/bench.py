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

from swinface.model import SwinFace, SwinFaceOutput

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
    vs_plain: float | None = None  # against the plain module-per-subnet model (`PlainSwinFace`)


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


BASELINE = ("eager", "float32")
PLAIN = "plain"  # the published module-per-subnet structure, eager float32


def default_targets(device: torch.device, backends: Sequence[str]) -> list[tuple[str, str]]:
    """(backend, precision) pairs worth timing here, for the named backends.

    On CPU: eager float32 (the baseline) and bf16 where the CPU has it, the
    plain model, ONNX Runtime float32 and int8, OpenVINO float32 and bf16 where
    the CPU has it. On GPU: each backend at the precision 'auto' resolves to.
    """
    from swinface.backends import cpu_runs_bf16, resolve_precision

    targets = [BASELINE]
    for name in backends:
        if device.type == "cuda":
            targets.append((name, resolve_precision("auto", device)))
        elif name == "eager":
            targets += [("eager", "bfloat16")] if cpu_runs_bf16() else []
        elif name == "onnxruntime":
            targets += [("onnxruntime", "float32"), ("onnxruntime", "int8")]
        elif name == "openvino":
            targets += [("openvino", "float32")]
            targets += [("openvino", "bfloat16")] if cpu_runs_bf16() else []
        else:
            targets.append((name, "float32"))
    return list(dict.fromkeys(targets))


class _PlainRunner:
    """The plain model behind the backend interface: uint8 faces in, float32 outputs out."""

    name, precision = PLAIN, "float32"

    def __init__(self, model: SwinFace) -> None:
        from swinface.model.plain import PlainSwinFace

        self.model = PlainSwinFace(model)

    def __call__(self, faces: torch.Tensor):
        with torch.inference_mode():
            return self.model(SwinFace.preprocess(faces.cpu()))


def make_runner(model: SwinFace, device: torch.device, target: tuple[str, str], int8_graph=None):
    """The callable that runs `target` = (backend, precision) on uint8 faces."""
    from swinface.backends import OnnxBackend, create_backend

    name, precision = target
    if name == PLAIN:
        return _PlainRunner(model)
    if target == ("onnxruntime", "int8") and int8_graph is not None:
        return OnnxBackend(int8_graph, device)
    if name == "onnxruntime" and precision == "float32":
        return OnnxBackend(model, device)
    return create_backend(name, model, device, precision)


def bench_model(
    model: SwinFace,
    device: torch.device,
    backends: Sequence[str],
    batches: Sequence[int],
    *,
    min_seconds: float = 2.0,
    targets: Sequence[tuple[str, str]] | None = None,
    rounds: int = 1,
    int8_graph=None,
    runners: dict | None = None,
) -> list[BenchRow]:
    """Model-only faces/s for each (backend, precision) and batch, beside eager float32.

    `targets` defaults to each backend at the precision 'auto' resolves to
    (float32 on CPU). Every target is timed in turn, `rounds` times over, and
    its best round kept, so that a load that comes and goes touches all alike.
    The ratios are to eager float32 and, when timed, to the plain model.
    `int8_graph`: the int8 graph to time for ('onnxruntime', 'int8'), else the
    cached one. `runners`, when given, collects what ran, by target. Every
    backend runs the model in eval mode, and the model is left as it was.
    """
    from swinface.backends import resolve_precision
    from swinface.model.borrowed import model_dtype

    if targets is None:
        dtype = model_dtype(model)
        targets = [BASELINE]
        for name in backends:
            resolved = (
                "float32" if name == "onnxruntime" else resolve_precision("auto", device, dtype)
            )
            targets.append((name, resolved))
    targets = list(dict.fromkeys([BASELINE, *targets]))
    made = runners if runners is not None else {}
    rows = []
    rng = np.random.default_rng(0)
    for batch in batches:
        faces = torch.from_numpy(rng.integers(0, 256, (batch, 112, 112, 3), np.uint8))
        if device.type == "cuda":
            faces = faces.pin_memory()
        best: dict[tuple[str, str], float] = {}
        for _ in range(max(1, rounds)):
            for target in targets:
                try:
                    if target not in made:
                        made[target] = make_runner(model, device, target, int8_graph)
                    seconds = time_call(
                        lambda r=made[target], x=faces: r(x), device, min_seconds=min_seconds
                    )
                except Exception as err:  # a backend that cannot run here is reported, not fatal
                    log.warning("%s %s at batch %d could not run: %s", *target, batch, err)
                    made.pop(target, None)
                    continue
                best[target] = min(seconds, best.get(target, float("inf")))
        base, plain = best.get(BASELINE), best.get((PLAIN, "float32"))
        for target, seconds in best.items():
            backend = "eager (baseline)" if target == BASELINE else target[0]
            row = BenchRow(
                "model", backend, made[target].precision, batch, batch / seconds, seconds * 1e3
            )
            row.ratio = base / seconds if base else None
            row.vs_plain = plain / seconds if plain else None
            rows.append(row)
    return rows


def bench_accuracy(
    runners: dict, faces: np.ndarray, *, batch: int = 16
) -> list[tuple[tuple[str, str], object]]:
    """Each runner's agreement with eager float32 on `faces` (`swinface.quantize.Agreement`)."""
    from swinface.quantize import agreement

    def run(runner):
        outs = [runner(torch.from_numpy(faces[i : i + batch])) for i in range(0, len(faces), batch)]
        return SwinFaceOutput(
            torch.cat([o.embedding for o in outs]), torch.cat([o.logits for o in outs])
        )

    reference = run(runners[BASELINE])
    return [
        (target, agreement(reference, run(runner)))
        for target, runner in runners.items()
        if target != BASELINE
    ]


def format_accuracy(results, faces_source: str) -> str:
    """The agreement table, with the accuracy bar beside it."""
    from swinface.quantize import ACCURACY_BAR as bar

    header = (
        f"{'backend':<12} {'precision':<9} {'cos mean':>8} {'cos min':>8} {'expr':>6} "
        f"{'gender':>6} {'attrs':>6} {'age (y)':>7}  bar"
    )
    lines = [f"agreement with eager float32 on {faces_source}:", header, "-" * len(header)]
    for (backend, precision), a in results:
        verdict = "meets" if a.meets() else "misses: " + "; ".join(a.shortfalls())
        lines.append(
            f"{backend:<12} {precision:<9} {a.cosine_mean:>8.4f} {a.cosine_min:>8.4f} "
            f"{a.expression:>6.1%} {a.gender:>6.1%} {a.attributes:>6.1%} "
            f"{a.age_difference:>7.3f}  {verdict}"
        )
    lines.append(
        f"bar: cosine mean >= {bar.cosine_mean}, min >= {bar.cosine_min}; expression, gender "
        f">= {bar.expression:.0%}; attributes >= {bar.attributes:.0%}; age <= {bar.age_difference} y"
    )
    return "\n".join(lines)


def bench_pipeline(
    analyzer, photo, *, photos_per_call: int = 8, min_seconds: float = 2.0
) -> BenchRow:
    """End to end: decode, detect, align and analyse the same photo many times
    (decoded each time, as a folder of photos would be)."""
    device = analyzer.runner.device
    seconds = time_call(
        lambda: list(analyzer.analyze_many([photo] * photos_per_call)),
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


def bench_stages(analyzer, photo, *, min_seconds: float = 1.0) -> dict[str, float]:
    """Milliseconds per photo for each stage of the pipeline on its own: decode (at the
    size detection needs), detect, align (with the finer decode that small faces in a
    big photo need), analyse (the model on the photo's faces). The slowest bounds photos/s."""
    device = analyzer.runner.device

    def decode():
        return analyzer.decode(analyzer.open(photo))

    decoded = decode()
    detections = analyzer.detect(decoded)
    crops = analyzer.align(analyzer.open(photo), decoded, detections)
    stages = {
        "decode": decode,
        "detect": lambda: analyzer.detect(decoded),
        # A fresh photo each time, so a finer decode is timed, not taken from its cache.
        "align": lambda: analyzer.align(analyzer.open(photo), decoded, detections),
    }
    if crops:
        faces = np.stack(crops)
        stages["analyse"] = lambda: analyzer.runner.run(faces)
    return {
        name: 1e3 * time_call(fn, device, warmup=1, min_seconds=min_seconds)
        for name, fn in stages.items()
    }


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
    plain = any(r.vs_plain is not None for r in rows)
    header = (
        f"{'what':<11} {'backend':<17} {'precision':<9} {'batch':>5} {'per second':>11} "
        f"{'ms/batch':>9} {'vs eager fp32':>13}" + (f" {'vs plain':>9}" if plain else "")
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        line = (
            f"{r.what:<11} {r.backend:<17} {r.precision:<9} {r.batch:>5} {r.per_second:>11.1f} "
            f"{r.latency_ms:>9.1f} {ratio:>13}"
        )
        if plain:
            line += f" {f'{r.vs_plain:.2f}x' if r.vs_plain is not None else '':>9}"
        lines.append(line)
    return "\n".join(lines)
