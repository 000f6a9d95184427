"""A real `swinface serve` process on a loopback port: the API end to end, SIGKILL mid-burst, restart."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
from serve_process import KEY, nano_weights, start_server, stop_server  # noqa: E402

from swinface.assets import SAMPLE_PHOTO  # noqa: E402

PHOTO = SAMPLE_PHOTO.read_bytes()


def _crop() -> bytes:
    """The astronaut's face as a 112x112 crop: enrolments without detection, for speed."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(SAMPLE_PHOTO).crop((150, 60, 330, 240)).resize((112, 112)).save(buf, "PNG")
    return buf.getvalue()


CROP = _crop()
W = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return nano_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


def _enrol(url: str, subject: str, aligned: bool = False) -> httpx.Response:
    image = ("a.png", CROP, "image/png") if aligned else ("a.jpg", PHOTO, "image/jpeg")
    return httpx.post(
        f"{url}/v1/galleries/crowd/subjects",
        data={"subject_id": subject, "aligned": str(aligned).lower()},
        files={"images": image},
        headers=W,
        timeout=60,
    )


def _check_api(url: str) -> None:
    """The API over a real socket: analysis, keys, enrolment, search, metrics."""
    assert url.startswith("http://127.0.0.1:")
    r = httpx.post(f"{url}/v1/analyze", files={"images": ("a.jpg", PHOTO, "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["photos"][0]["faces"]) == 1
    assert r.json()["model"]["weights"] == "nano-test"
    assert r.json()["model"]["verify_threshold"] == 0.5  # read from the weights file
    assert httpx.post(f"{url}/v1/galleries", json={"name": "crowd"}).status_code == 401
    assert httpx.post(f"{url}/v1/galleries", json={"name": "crowd"}, headers=W).status_code == 201
    assert _enrol(url, "eileen").status_code == 201
    s = httpx.post(
        f"{url}/v1/galleries/crowd/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")}
    )
    assert s.json()["faces"][0]["identity"] == "eileen"
    assert "swinface_batch_photos_count" in httpx.get(f"{url}/metrics").text


def test_sigkill_mid_burst_loses_no_acknowledged_enrolment(weights, tmp_path):
    data = tmp_path / "data"
    extra = ("--faiss-min", "5")  # the FAISS path: an index file persisted, then stale
    proc, url = start_server(weights, data, *extra)
    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    try:
        _check_api(url)
        for i in range(5):
            assert _enrol(url, f"first{i}", aligned=True).status_code == 201
            acknowledged.append(f"first{i}")
        httpx.post(
            f"{url}/v1/galleries/crowd/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")}
        )
        assert list((data / "indexes").glob("*.faiss")), "the FAISS index was not persisted"

        def burst(worker: int) -> None:
            for i in range(40):
                if killed.is_set():
                    return
                subject = f"w{worker}-{i}"
                try:
                    r = _enrol(url, subject, aligned=True)
                except httpx.HTTPError:
                    return  # the server died under this request: not acknowledged
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(subject)
                        if len(acknowledged) >= 20 and not killed.is_set():
                            killed.set()
                            proc.send_signal(signal.SIGKILL)

        threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        stop_server(proc, signal.SIGKILL)
    assert killed.is_set() and proc.returncode == -signal.SIGKILL

    with sqlite3.connect(data / "galleries.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    proc, url = start_server(weights, data, *extra)
    try:
        subjects = httpx.get(f"{url}/v1/galleries/crowd/subjects").json()
        stored = {s["subject_id"]: s["embeddings"] for s in subjects}
        assert set(acknowledged) <= set(stored)  # every 2xx enrolment survived
        assert set(stored.values()) == {1}  # none half-written
        # The persisted index was stale; after the restart it holds exactly the stored subjects.
        r = httpx.post(
            f"{url}/v1/galleries/crowd/search",
            files={"image": ("q.png", CROP, "image/png")},
            data={"top_k": "100", "aligned": "true"},
            timeout=60,
        )
        found = {c["subject_id"] for c in r.json()["faces"][0]["candidates"]}
        assert found == set(stored)
    finally:
        stop_server(proc)
    # A clean shutdown on SIGTERM (uvicorn re-raises the signal once it has shut down).
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in Path(proc.log_file.name).read_text()
