"""The PostgreSQL store: the same contract as SQLite, and two service processes sharing a gallery."""

from __future__ import annotations

import numpy as np
import pytest
from postgres_server import PostgresServer, available

from swinface.gallery import AlreadyExists, DigestMismatch, GallerySearcher, UnknownSubject

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))
DIGEST = "a" * 64


@pytest.fixture(scope="module")
def server():
    pg = PostgresServer().start()
    yield pg
    pg.stop()


@pytest.fixture
def store(server):
    from swinface.gallery.postgres import PostgresStore

    s = PostgresStore(server.new_database())
    yield s
    s.close()


def test_postgres_store_keeps_the_contract(store):
    store.create_gallery("g", {"site": "hq"})
    vectors = np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32)
    store.add_subject("g", "ada", vectors, DIGEST, name="Ada", metadata={"k": 1})
    np.testing.assert_array_equal(store.embedding_rows("g", DIGEST).vectors, vectors)
    assert store.get_gallery("g").embeddings == 3 and store.get_subject("g", "ada").metadata == {
        "k": 1
    }
    with pytest.raises(AlreadyExists):
        store.add_subject("g", "ada", vectors[:1], DIGEST)
    with pytest.raises(DigestMismatch, match="re-enrol"):
        store.add_subject("g", "bob", vectors[:1], "b" * 64)
    assert store.get_subject("g", "ada").embeddings == 3  # nothing half-written
    assert [s.subject_id for s in store.list_subjects("g")] == ["ada"]
    generation = store.generation("g")
    store.delete_subject("g", "ada")
    assert store.generation("g") == generation + 1
    with pytest.raises(UnknownSubject):
        store.get_subject("g", "ada")
    assert store.integrity_check() == "ok"


def test_two_stores_on_one_database_see_each_others_changes(server):
    from swinface.gallery.postgres import PostgresStore

    url = server.new_database()
    a, b = PostgresStore(url), PostgresStore(url)  # schema creation twice is harmless
    try:
        a.create_gallery("g")
        searcher = GallerySearcher(b, DIGEST)
        assert searcher.search("g", np.ones(8)) == [[]]
        a.add_subject("g", "x", np.ones((1, 8)), DIGEST)
        assert searcher.search("g", np.ones(8))[0][0].subject_id == "x"
        a.delete_subject("g", "x")
        assert searcher.search("g", np.ones(8)) == [[]]
    finally:
        a.close()
        b.close()


def test_two_serve_processes_share_a_gallery(server, tmp_path):
    import httpx

    pytest.importorskip("fastapi")
    from serve_process import KEY, launch_server, nano_weights, stop_server, wait_ready

    from swinface.assets import SAMPLE_PHOTO

    photo = ("a.jpg", SAMPLE_PHOTO.read_bytes(), "image/jpeg")
    weights = nano_weights(tmp_path / "nano.safetensors")
    url = server.new_database()
    procs = []
    try:
        procs.append(launch_server(weights, tmp_path / "a", "--store", url))
        procs.append(launch_server(weights, tmp_path / "b", "--store", url))
        for proc, base in procs:  # both start at once: the shared schema is made once
            wait_ready(proc, base)
        (_, one), (_, two) = procs
        key = {"X-API-Key": KEY}
        assert httpx.post(f"{one}/v1/galleries", json={"name": "g"}, headers=key).status_code == 201
        assert [g["name"] for g in httpx.get(f"{two}/v1/galleries").json()] == ["g"]
        r = httpx.post(f"{two}/v1/galleries/g/search", files={"image": photo}, timeout=60)
        assert r.json()["faces"][0]["identity"] is None  # empty so far; B has built its index
        r = httpx.post(
            f"{one}/v1/galleries/g/subjects",
            data={"subject_id": "eileen"},
            files={"images": photo},
            headers=key,
            timeout=60,
        )
        assert r.status_code == 201
        r = httpx.post(f"{two}/v1/galleries/g/search", files={"image": photo}, timeout=60)
        assert r.json()["faces"][0]["identity"] == "eileen"  # enrolled through A, found by B
        assert httpx.delete(f"{two}/v1/galleries/g/subjects/eileen", headers=key).status_code == 204
        r = httpx.post(f"{one}/v1/galleries/g/search", files={"image": photo}, timeout=60)
        assert r.json()["faces"][0]["candidates"] == []  # deleted through B, gone for A
    finally:
        for proc, _ in procs:
            stop_server(proc)
