"""The server side of `swinface bench-serve`: a `swinface serve` subprocess on loopback."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(
    weights: Path, data: Path, args: argparse.Namespace, max_queue: int
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a server on 127.0.0.1, ready; stopped when the block ends."""
    import httpx

    port = _free_port()
    cmd = [
        sys.executable, "-m", "swinface.cli", "serve", "--weights", str(weights),
        "--device", args.device, "--backend", args.backend, "--host", "127.0.0.1",
        "--port", str(port), "--data", str(data), "--threshold", "0.3",
        "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
        "--max-queue", str(max_queue),
    ]  # fmt: skip
    env = dict(os.environ, SWINFACE_API_KEYS="bench-only")
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(data / 'server.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.time() > deadline:
                raise RuntimeError("server not ready after 600 s")
            time.sleep(0.25)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
