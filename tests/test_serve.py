"""The service through its ASGI app: analysis, verification, galleries, limits, keys, batching."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from swinface.assets import SAMPLE_PHOTO  # noqa: E402
from swinface.model import create_model  # noqa: E402
from swinface.pipeline import FaceAnalyzer  # noqa: E402
from swinface.serve import ServeSettings, create_app  # noqa: E402
from swinface.serve.batching import BatchRunner, QueueFull  # noqa: E402

KEY = "test-key-1"
PHOTO = SAMPLE_PHOTO.read_bytes()


def nano(seed: int):
    torch.manual_seed(seed)
    return create_model("swinface_nano").eval()


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer(model=nano(0), device="cpu", backend="eager", batch_size=16)


def make_client(analyzer, tmp_path, **overrides) -> TestClient:
    settings = ServeSettings(
        data_dir=tmp_path / "data", api_keys=(KEY,), verify_threshold=0.5, **overrides
    )
    return TestClient(create_app(analyzer, settings))


@pytest.fixture
def client(analyzer, tmp_path):
    with make_client(analyzer, tmp_path) as c:
        deadline = time.time() + 60
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        yield c


W = {"X-API-Key": KEY}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buf, "PNG")
    return buf.getvalue()


def test_health_ready_docs_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/analyze", "/v1/verify", "/v1/galleries/{gallery}/search"} <= set(paths)
    client.post("/v1/analyze", files={"images": ("a.jpg", PHOTO, "image/jpeg")})
    text = client.get("/metrics").text
    assert 'swinface_requests_total{method="POST",route="/v1/analyze",status="200"} 1.0' in text
    assert "swinface_faces_analysed_total 1.0" in text
    assert "swinface_queue_depth 0.0" in text and "swinface_batch_photos_bucket" in text
    assert "swinface_request_duration_seconds_bucket" in text


def test_analyze_multipart_and_base64_json_agree(client, analyzer):
    r = client.post(
        "/v1/analyze",
        files={"images": ("astronaut.jpg", PHOTO, "image/jpeg")},
        data={"embeddings": "true"},
    )
    assert r.status_code == 200, r.text
    [photo] = r.json()["photos"]
    assert (photo["source"], photo["width"], photo["height"]) == ("astronaut.jpg", 512, 512)
    [face] = photo["faces"]
    assert len(face["landmarks"]) == 5 and len(face["attributes"]) == 40
    assert (
        len(face["embedding"]) == analyzer.model.config.embedding_dim
        and face["expression"] in face["expression_probabilities"]
    )
    # The same record as the library's (and so as `swinface analyze`).
    want = analyzer.analyze(SAMPLE_PHOTO).faces[0].to_dict()
    assert face["age"] == pytest.approx(want["age"], abs=1e-2) and face["box"] == want["box"]
    j = client.post("/v1/analyze", json={"images": [base64.b64encode(PHOTO).decode()] * 2})
    assert j.status_code == 200
    photos = j.json()["photos"]
    assert [p["source"] for p in photos] == ["images[0]", "images[1]"]
    assert photos[0]["faces"][0]["age"] == face["age"]
    assert photos[0]["faces"][0]["embedding"] is None  # only when asked for
    assert j.json()["model"]["verify_threshold"] == 0.5 and len(j.json()["model"]["digest"]) == 64


def test_aligned_crops_and_detector_options(client):
    crop = io.BytesIO()
    Image.open(SAMPLE_PHOTO).crop((150, 60, 330, 240)).resize((112, 112)).save(crop, "PNG")
    r = client.post(
        "/v1/analyze",
        files={"images": ("crop.png", crop.getvalue(), "image/png")},
        data={"aligned": "true"},
    )
    [face] = r.json()["photos"][0]["faces"]
    assert face["box"] == [0.0, 0.0, 112.0, 112.0] and face["landmarks"] is None
    tiny = client.post(
        "/v1/analyze", json={"images": [base64.b64encode(PHOTO).decode()], "min_face": 600}
    )
    assert tiny.json()["photos"][0]["faces"] == []  # the face is smaller than 600 px
    bad = client.post(
        "/v1/analyze", json={"images": [base64.b64encode(PHOTO).decode()], "max_faces": 0}
    )
    assert bad.status_code == 422 and "max_faces" in bad.json()["detail"]


def test_verify_same_photo(client):
    r = client.post(
        "/v1/verify",
        files={"a": ("a.jpg", PHOTO, "image/jpeg"), "b": ("b.jpg", PHOTO, "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["same"] is True and r.json()["similarity"] == pytest.approx(1.0, abs=1e-4)
    blank = png(200, 200)
    r = client.post(
        "/v1/verify",
        json={"a": base64.b64encode(PHOTO).decode(), "b": base64.b64encode(blank).decode()},
    )
    assert (
        r.status_code == 422 and "image b" in r.json()["detail"] and "no face" in r.json()["detail"]
    )


def test_gallery_lifecycle_enrol_search_delete(client):
    assert client.post("/v1/galleries", json={"name": "staff"}, headers=W).status_code == 201
    assert [g["name"] for g in client.get("/v1/galleries").json()] == ["staff"]
    r = client.post(
        "/v1/galleries/staff/subjects",
        data={"subject_id": "eileen", "name": "Eileen C.", "metadata": '{"role": "pilot"}'},
        files=[
            ("images", ("1.jpg", PHOTO, "image/jpeg")),
            ("images", ("2.jpg", PHOTO, "image/jpeg")),
        ],
        headers=W,
    )
    assert r.status_code == 201, r.text
    assert r.json()["subject"]["embeddings"] == 2 and r.json()["subject"]["metadata"] == {
        "role": "pilot"
    }
    s = client.post("/v1/galleries/staff/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")})
    assert s.status_code == 200, s.text
    [face] = s.json()["faces"]
    assert (face["identity"], face["name"]) == ("eileen", "Eileen C.")
    assert face["candidates"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    subjects = client.get("/v1/galleries/staff/subjects").json()
    assert [x["subject_id"] for x in subjects] == ["eileen"]
    assert client.delete("/v1/galleries/staff/subjects/eileen", headers=W).status_code == 204
    s = client.post("/v1/galleries/staff/search", json={"image": base64.b64encode(PHOTO).decode()})
    assert s.json()["faces"][0]["identity"] is None and s.json()["faces"][0]["candidates"] == []
    assert client.delete("/v1/galleries/staff", headers=W).status_code == 204
    assert client.get("/v1/galleries").json() == []


def test_unknown_below_threshold(client, tmp_path):
    client.post("/v1/galleries", json={"name": "g"}, headers=W)
    svc = client.app.state.service
    rng = np.random.default_rng(0)
    other = rng.normal(size=(1, client.app.state.service.analyzer.model.config.embedding_dim))
    svc.store.add_subject("g", "stranger", other, svc.digest)
    face = client.post(
        "/v1/galleries/g/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")}
    ).json()["faces"][0]
    assert face["identity"] is None and face["candidates"][0]["subject_id"] == "stranger"
    assert face["candidates"][0]["same"] is False


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("non-image", 422, "notes.txt: not an image"),
        ("truncated", 422, "cut.jpg: the image data is truncated"),
        ("empty", 400, "body is empty"),
        ("content-type", 415, "'text/plain' is not accepted"),
        ("base64", 422, "images[0]: not valid base64"),
        ("url", 422, "not valid base64"),  # a URL is never fetched
    ],
)
def test_bad_images_get_status_and_message(client, case, status, words):
    if case == "non-image":
        r = client.post(
            "/v1/analyze", files={"images": ("notes.txt", b"hello, not a photo", "text/plain")}
        )
    elif case == "truncated":
        r = client.post("/v1/analyze", files={"images": ("cut.jpg", PHOTO[:3000], "image/jpeg")})
    elif case == "empty":
        r = client.post("/v1/analyze", content=b"", headers={"content-type": "application/json"})
    elif case == "content-type":
        r = client.post("/v1/analyze", content=PHOTO, headers={"content-type": "text/plain"})
    elif case == "base64":
        r = client.post("/v1/analyze", json={"images": ["%%% not base64"]})
    else:
        r = client.post("/v1/analyze", json={"images": ["http://127.0.0.1:9/x.jpg"]})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_size_limits_name_the_limit(analyzer, tmp_path):
    with make_client(analyzer, tmp_path, max_pixels=1_000_000, max_body_bytes=300_000) as c:
        r = c.post("/v1/analyze", files={"images": ("big.png", png(1200, 1000), "image/png")})
        assert r.status_code == 413
        assert "big.png: 1200x1000 pixels is over the limit of 1000000 pixels" in r.json()["detail"]
        r = c.post("/v1/analyze", files={"images": ("x.bin", b"\0" * 400_000, "image/jpeg")})
        assert r.status_code == 413 and "over the limit of 300000 bytes" in r.json()["detail"]
        r = c.post(
            "/v1/analyze",
            files=[("images", (f"{i}.png", png(8, 8), "image/png")) for i in range(17)],
        )
        assert r.status_code == 413 and "the limit is 16 per request" in r.json()["detail"]


def test_keys_guard_every_write(client):
    gallery = {"name": "g"}
    assert client.post("/v1/galleries", json=gallery).status_code == 401
    r = client.post("/v1/galleries", json=gallery, headers={"X-API-Key": "wrong"})
    assert r.status_code == 403 and "not valid" in r.json()["detail"]
    assert (
        client.post(
            "/v1/galleries", json=gallery, headers={"Authorization": f"Bearer {KEY}"}
        ).status_code
        == 201
    )
    enrol = dict(data={"subject_id": "x"}, files={"images": ("a.jpg", PHOTO, "image/jpeg")})
    assert client.post("/v1/galleries/g/subjects", **enrol).status_code == 401
    assert client.delete("/v1/galleries/g/subjects/x").status_code == 401
    assert client.delete("/v1/galleries/g", headers={"X-API-Key": "nope"}).status_code == 403
    assert client.get("/v1/galleries/g").status_code == 200  # reads are open by default
    assert client.get("/v1/galleries/g/subjects").json() == []


def test_protected_reads(analyzer, tmp_path):
    with make_client(analyzer, tmp_path, protect_reads=True) as c:
        assert c.get("/v1/galleries").status_code == 401
        assert c.get("/v1/galleries", headers=W).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_gallery_errors_leave_nothing_half_written(client):
    assert (
        client.post(
            "/v1/galleries/none/subjects",
            data={"subject_id": "x"},
            files={"images": ("a.jpg", PHOTO, "image/jpeg")},
            headers=W,
        ).status_code
        == 404
    )
    client.post("/v1/galleries", json={"name": "g"}, headers=W)
    assert client.post("/v1/galleries", json={"name": "g"}, headers=W).status_code == 409
    r = client.post("/v1/galleries", json={"name": "../x"}, headers=W)
    assert r.status_code == 400 and "gallery '../x'" in r.json()["detail"]
    # One good photo and one without a face: refused, nothing stored.
    r = client.post(
        "/v1/galleries/g/subjects",
        data={"subject_id": "half"},
        files=[
            ("images", ("ok.jpg", PHOTO, "image/jpeg")),
            ("images", ("blank.png", png(300, 300), "image/png")),
        ],
        headers=W,
    )
    assert (
        r.status_code == 422
        and "blank.png: no face found; nothing was enrolled" in r.json()["detail"]
    )
    r = client.post(
        "/v1/galleries/g/subjects",
        data={"subject_id": "bad"},
        files={"images": ("t.jpg", PHOTO[:3000], "image/jpeg")},
        headers=W,
    )
    assert r.status_code == 422 and "t.jpg" in r.json()["detail"]
    r = client.post(
        "/v1/galleries/g/subjects",
        data={"subject_id": "idx", "face_index": "3"},
        files={"images": ("a.jpg", PHOTO, "image/jpeg")},
        headers=W,
    )
    assert r.status_code == 422 and "face_index 3 but the photo has 1 face(s)" in r.json()["detail"]
    assert client.get("/v1/galleries/g/subjects").json() == []
    ok = dict(data={"subject_id": "a"}, files={"images": ("a.jpg", PHOTO, "image/jpeg")}, headers=W)
    assert client.post("/v1/galleries/g/subjects", **ok).status_code == 201
    r = client.post("/v1/galleries/g/subjects", **ok)
    assert r.status_code == 409 and "'a' already exists" in r.json()["detail"]
    assert client.get("/v1/galleries/g/subjects/a").json()["embeddings"] == 1
    assert client.get("/v1/galleries/g/subjects/zz").status_code == 404
    assert client.delete("/v1/galleries/g/subjects/zz", headers=W).status_code == 404
    assert (
        client.post(
            "/v1/galleries/nope/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")}
        ).status_code
        == 404
    )


def test_embeddings_from_other_weights_are_refused(client):
    client.post("/v1/galleries", json={"name": "old"}, headers=W)
    client.app.state.service.store.add_subject("old", "x", np.ones((1, 64)), "f" * 64)
    r = client.post("/v1/galleries/old/search", files={"image": ("q.jpg", PHOTO, "image/jpeg")})
    assert (
        r.status_code == 409
        and "re-enrol" in r.json()["detail"]
        and "ffffffffffff" in r.json()["detail"]
    )
    r = client.post(
        "/v1/galleries/old/subjects",
        data={"subject_id": "y"},
        files={"images": ("a.jpg", PHOTO, "image/jpeg")},
        headers=W,
    )
    assert r.status_code == 409 and "other weights" in r.json()["detail"]
    assert [s["subject_id"] for s in client.get("/v1/galleries/old/subjects").json()] == ["x"]


def test_full_queue_answers_503_at_once(analyzer, tmp_path):
    with make_client(analyzer, tmp_path, max_queue=2) as c:
        files = [("images", (f"{i}.jpg", PHOTO, "image/jpeg")) for i in range(3)]
        start = time.perf_counter()
        r = c.post("/v1/analyze", files=files)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "queue is full" in r.json()["detail"] and time.perf_counter() - start < 5
        assert "swinface_rejected_busy_total 1.0" in c.get("/metrics").text


def test_runner_batches_waiting_photos_together(analyzer):
    batches = []
    runner = BatchRunner(
        analyzer,
        max_batch=4,
        max_wait_ms=50,
        max_queue=6,
        on_batch=lambda p, f: batches.append((p, f)),
    )
    image = np.asarray(Image.open(SAMPLE_PHOTO).convert("RGB"))
    futures = runner.submit([image] * 6)
    with pytest.raises(QueueFull, match="6 of 6"):
        runner.submit([image])
    runner.start()
    try:
        results = [f.result(timeout=60) for f in futures]
    finally:
        runner.stop()
    assert [len(r.faces) for r in results] == [1] * 6
    assert batches == [(4, 4), (2, 2)]  # the waiting photos went through in two batches


def test_cors_is_off_unless_configured(client, analyzer, tmp_path):
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/v1/analyze", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    with make_client(analyzer, tmp_path / "c", cors_origins=("https://app.example",)) as c:
        r = c.options("/v1/analyze", headers={**pre, "Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")
    assert client.get("/static/app.js").status_code == 200


def test_without_keys_nothing_is_writable(analyzer, tmp_path):
    settings = ServeSettings(data_dir=tmp_path / "d", api_keys=(), verify_threshold=0.5)
    with TestClient(create_app(analyzer, settings)) as c:
        r = c.post("/v1/galleries", json={"name": "g"}, headers={"X-API-Key": "anything"})
        assert r.status_code == 403 and "no API keys configured" in r.json()["detail"]


def test_keys_from_env_and_file_are_kept_hashed(tmp_path):
    import hashlib

    from swinface.serve.auth import KeyRing
    from swinface.serve.settings import read_keys

    hashed = hashlib.sha256(b"from-hash").hexdigest()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# service keys\nplain-key\nsha256:{hashed}  # ci\n\n")
    keys = read_keys(keys_file, environ={"SWINFACE_API_KEYS": "env-a, env-b"})
    assert keys == ("env-a", "env-b", "plain-key", f"sha256:{hashed}")
    ring = KeyRing(keys)
    assert all(ring.accepts(k) for k in ("env-a", "env-b", "plain-key", "from-hash"))
    assert not any(ring.accepts(k) for k in ("", "env", f"sha256:{hashed}", "plain-key "))
    assert "plain-key" not in repr(vars(ring))  # only hashes are held
    with pytest.raises(FileNotFoundError, match="missing: keys file not found"):
        read_keys(tmp_path / "missing", environ={})
