"""`swinface bench-serve`: a bounded load test of a local `swinface serve`, and gallery scale.

The load test starts a server on a loopback port (it never sends anything
elsewhere), then for each number of concurrent clients sends a fixed number
of requests within a time limit, and reports throughput, p50/p99 latency,
peak server memory and the errors by kind. A last round goes beyond the
queue, where the only acceptable errors are 503s. The in-process batched
photos/s of the same model is measured first, for comparison.

`--scale` instead times gallery search (exact and FAISS) up to a million
synthetic 512-d embeddings, with recall against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="weights (default: random weights, same speed)")
    p.add_argument("--model", default="swinface_t", help="architecture when no weights are named")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--backend", default="auto", help="auto, eager, compiled, onnxruntime")
    p.add_argument("--photo", default=None, help="the photo every request sends")
    p.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=200, help="requests per round (at most)")
    p.add_argument("--seconds", type=float, default=60.0, help="time limit per round")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument(
        "--overload",
        type=int,
        default=128,
        help="clients in the last round, against a queue of 8 photos (0: skip)",
    )
    p.add_argument("--scale", action="store_true", help="gallery search figures instead")
    p.add_argument("--sizes", nargs="+", type=int, default=[20_000, 100_000, 1_000_000])


@dataclass
class Round:
    clients: int
    sent: int = 0
    ok: int = 0
    errors: dict[int | str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1e3
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items(), key=str)) or "none"
        return (
            f"{self.clients:>7} {self.sent:>8} {self.ok / self.seconds:>9.1f} {p50:>8.0f} "
            f"{p99:>8.0f} {self.peak_rss_mib:>9.0f}  {errors}"
        )


HEADER = f"{'clients':>7} {'requests':>8} {'photos/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'peak MiB':>9}  errors"


class _MemoryWatch:
    """Peak resident memory of a process and its children, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                rss += sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except Exception:  # the process is gone
                return
            self.peak = max(self.peak, rss)
            self._stop.wait(0.02)

    def __enter__(self) -> _MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def _round(url: str, photo: bytes, clients: int, requests: int, seconds: float) -> Round:
    import httpx

    result = Round(clients)
    remaining = requests
    deadline = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            result.sent += 1
            start = time.perf_counter()
            try:
                r = await http.post(
                    f"{url}/v1/analyze", files={"images": ("photo.jpg", photo, "image/jpeg")}
                )
                status: int | str = r.status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            if status == 200:
                result.ok += 1
                result.latencies.append(time.perf_counter() - start)
            else:
                result.errors[status] = result.errors.get(status, 0) + 1
                if status == 503:
                    await asyncio.sleep(0.05)  # a client that honours Retry-After, briefly

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=max(seconds, 30), limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    return result


def _weights_file(args: argparse.Namespace, folder: Path) -> Path:
    import torch

    from swinface.model import create_model
    from swinface.weights import save_native

    if args.weights:
        return Path(args.weights)
    torch.manual_seed(0)
    path = folder / f"{args.model}-random.safetensors"
    save_native(create_model(args.model), path, name=f"{args.model} (random)")
    return path


def _in_process(weights: Path, args: argparse.Namespace, photo: str) -> tuple[float, str]:
    from swinface import bench
    from swinface.pipeline import FaceAnalyzer

    analyzer = FaceAnalyzer(weights=weights, device=args.device, backend=args.backend)
    row = bench.bench_pipeline(analyzer, photo, photos_per_call=8, min_seconds=5.0)
    return row.per_second, f"{row.backend} {row.precision}"


def run_load(args: argparse.Namespace) -> int:
    from swinface import bench
    from swinface.assets import SAMPLE_PHOTO
    from swinface.weights.loading import resolve_device

    photo_path = args.photo or str(SAMPLE_PHOTO)
    photo = Path(photo_path).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        weights = _weights_file(args, Path(tmp))
        print(f"machine: {bench.machine_description(resolve_device(args.device))}", flush=True)
        per_second, how = _in_process(weights, args, photo_path)
        print(f"in-process, batched (8 photos per call, {how}): {per_second:.1f} photos/s\n")
        rounds = [(c, args.max_queue) for c in args.clients]
        if args.overload:
            rounds.append((args.overload, 8))
        print(HEADER)
        print("-" * len(HEADER))
        for clients, queue in rounds:
            from swinface.serve.loadtest_server import running

            with running(weights, Path(tmp) / f"data-{clients}", args, queue) as (url, pid):
                asyncio.run(_round(url, photo, min(clients, 4), 8, 30))  # warm the connection
                with _MemoryWatch(pid) as memory:
                    r = asyncio.run(_round(url, photo, clients, args.requests, args.seconds))
                r.peak_rss_mib = memory.peak / 2**20
            note = f"   (queue of {queue} photos)" if queue != args.max_queue else ""
            print(r.line() + note, flush=True)
            if clients == 8:
                print(f"{'':>7} 8 clients reach {r.ok / r.seconds / per_second:.0%} of in-process")
    return 0


def run_scale(args: argparse.Namespace) -> int:
    from swinface.gallery.scale import format_figures, measure

    figures = []
    for size in args.sizes:
        figures += measure(size, exact=size <= 100_000)
        print(format_figures(figures), flush=True)
        print()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.scale:
        return run_scale(args)
    try:
        import httpx  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as err:
        print(f"bench-serve needs {err.name}: pip install 'swinface[serve]' httpx", file=sys.stderr)
        return 2
    return run_load(args)
