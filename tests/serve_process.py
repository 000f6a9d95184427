"""Helpers for tests that run a real `swinface serve` process on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
KEY = "process-test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nano_weights(path: Path, seed: int = 0) -> Path:
    """Small random weights in the native format, with a verification threshold."""
    import torch

    from swinface.model import create_model
    from swinface.weights import save_native

    torch.manual_seed(seed)
    save_native(
        create_model("swinface_nano"), path, name="nano-test", metadata={"verify_threshold": "0.5"}
    )
    return path


def launch_server(weights: Path, data: Path, *extra: str, port: int | None = None):
    """Start `swinface serve` without waiting; returns (process, base URL)."""
    port = port or free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["SWINFACE_API_KEYS"] = KEY
    env["OMP_NUM_THREADS"] = "1"  # leave the test runner's cores alone
    cmd = [
        sys.executable, "-m", "swinface.cli", "serve",
        "--weights", str(weights), "--device", "cpu", "--backend", "eager",
        "--host", "127.0.0.1", "--port", str(port), "--data", str(data), *extra,
    ]  # fmt: skip
    data.parent.mkdir(parents=True, exist_ok=True)
    log = open(data.parent / f"server-{port}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_file = log  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc, url: str, timeout: float = 180) -> None:
    """Wait for /readyz to answer 200; stop the process and say why if it does not."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"server did not start: {Path(proc.log_file.name).read_text()[-3000:]}")


def start_server(weights: Path, data: Path, *extra: str, port: int | None = None):
    """Start `swinface serve`; returns (process, base URL) once /readyz answers 200."""
    proc, url = launch_server(weights, data, *extra, port=port)
    wait_ready(proc, url)
    return proc, url


def stop_server(proc, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.log_file.close()


@contextlib.contextmanager
def running_server(weights: Path, data: Path, *extra: str) -> Iterator[str]:
    proc, url = start_server(weights, data, *extra)
    try:
        yield url
    finally:
        stop_server(proc)
