"""Gallery storage and search: SQLite (WAL), digests, exact and FAISS indexes, persistence."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from swinface.gallery import (
    AlreadyExists,
    DigestMismatch,
    GalleryError,
    GallerySearcher,
    SQLiteStore,
    UnknownGallery,
    UnknownSubject,
)
from swinface.gallery.index import ExactIndex, FaissIndex, normalize

DIGEST = "a" * 64
OTHER = "b" * 64


def _people(n: int, per: int = 2, dim: int = 64, seed: int = 0):
    """n identities, `per` noisy embeddings each, and one fresh probe per identity."""
    rng = np.random.default_rng(seed)
    centres = normalize(rng.normal(size=(n, dim)))
    shots = normalize(centres[:, None] + 0.3 * rng.normal(size=(n, per, dim)) / np.sqrt(dim))
    probes = normalize(centres + 0.3 * rng.normal(size=(n, dim)) / np.sqrt(dim))
    return shots.astype(np.float32), probes.astype(np.float32)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "g.sqlite")
    yield s
    s.close()


def test_sqlite_is_wal_and_round_trips_float32(store, tmp_path):
    store.create_gallery("staff", {"site": "hq"})
    vectors = np.random.default_rng(1).normal(size=(3, 512)).astype(np.float32)
    store.add_subject("staff", "ada", vectors, DIGEST, name="Ada L.", metadata={"team": "x"})
    rows = store.embedding_rows("staff", DIGEST)
    np.testing.assert_array_equal(rows.vectors, vectors)  # bit-exact float32
    assert rows.subjects == ["ada"] * 3
    subject = store.get_subject("staff", "ada")
    assert (subject.name, subject.embeddings, subject.metadata) == ("Ada L.", 3, {"team": "x"})
    [g] = store.list_galleries()
    assert (g.name, g.subjects, g.embeddings, g.metadata) == ("staff", 1, 3, {"site": "hq"})
    with sqlite3.connect(tmp_path / "g.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_check() == "ok"


def test_errors_name_the_problem_and_leave_nothing_half_written(store):
    store.create_gallery("g")
    with pytest.raises(AlreadyExists, match="gallery 'g' already exists"):
        store.create_gallery("g")
    with pytest.raises(UnknownGallery, match="'nope'"):
        store.add_subject("nope", "x", np.ones((1, 8)), DIGEST)
    with pytest.raises(GalleryError, match="subject_id '../etc'"):
        store.add_subject("g", "../etc", np.ones((1, 8)), DIGEST)
    store.add_subject("g", "x", np.ones((2, 8)), DIGEST)
    with pytest.raises(AlreadyExists, match="subject 'x' already exists"):
        store.add_subject("g", "x", np.ones((5, 8)), DIGEST)
    with pytest.raises(GalleryError, match="NaN"):
        store.add_subject("g", "y", np.full((1, 8), np.nan), DIGEST)
    # The duplicate kept its first two embeddings; the refused ones left nothing.
    assert store.get_subject("g", "x").embeddings == 2
    assert [s.subject_id for s in store.list_subjects("g")] == ["x"]
    assert len(store.embedding_rows("g", DIGEST).ids) == 2
    with pytest.raises(UnknownSubject, match="'zz'"):
        store.delete_subject("g", "zz")


def test_other_weights_are_refused_with_a_way_out(store):
    store.create_gallery("g")
    store.add_subject("g", "x", np.ones((1, 8)), DIGEST)
    with pytest.raises(DigestMismatch, match="re-enrol"):
        store.add_subject("g", "y", np.ones((1, 8)), OTHER)
    searcher = GallerySearcher(store, OTHER)
    with pytest.raises(DigestMismatch, match=r"1 made by weights aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        searcher.search("g", np.ones(8))
    assert store.get_gallery("g").subjects == 1


def test_delete_removes_a_subject_for_good(store, tmp_path):
    store.create_gallery("g")
    marker = np.full((1, 16), 1234.5, np.float32)  # a byte pattern to look for in the file
    store.add_subject("g", "gone", marker, DIGEST, name="Zyxwv Qutsr")
    store.add_subject("g", "kept", np.ones((1, 16)), DIGEST)
    store.delete_subject("g", "gone")
    with pytest.raises(UnknownSubject):
        store.get_subject("g", "gone")
    assert store.embedding_rows("g", DIGEST).subjects == ["kept"]
    # Read while the store is open: the WAL must not keep the old pages either.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("g.sqlite*"))
    assert marker.tobytes() not in raw and b"Zyxwv Qutsr" not in raw


def test_exact_search_finds_each_identity_and_ranks_subjects(store):
    shots, probes = _people(30)
    store.create_gallery("g")
    for i, s in enumerate(shots):
        store.add_subject("g", f"p{i}", s, DIGEST)
    searcher = GallerySearcher(store, DIGEST)
    results = searcher.search("g", probes, top_k=3)
    assert [r[0].subject_id for r in results] == [f"p{i}" for i in range(30)]
    for r in results:  # three distinct subjects, best first
        assert len({m.subject_id for m in r}) == 3
        assert r[0].similarity >= r[1].similarity >= r[2].similarity
    assert searcher.status("g")["kind"] == "exact"


def test_index_follows_enrolments_and_deletions(store):
    shots, probes = _people(10)
    store.create_gallery("g")
    searcher = GallerySearcher(store, DIGEST)
    assert searcher.search("g", probes[:1]) == [[]]
    store.add_subject("g", "p0", shots[0], DIGEST)
    assert searcher.search("g", probes[:1])[0][0].subject_id == "p0"
    store.delete_subject("g", "p0")
    assert searcher.search("g", probes[:1]) == [[]]
    store.delete_gallery("g")
    with pytest.raises(UnknownGallery):
        searcher.search("g", probes[:1])


def test_faiss_index_beyond_the_threshold_is_persisted_and_kept_in_step(store, tmp_path):
    shots, probes = _people(400, per=2, dim=32)
    store.create_gallery("big")
    for i, s in enumerate(shots[:300]):
        store.add_subject("big", f"p{i}", s, DIGEST)
    index_dir = tmp_path / "indexes"
    searcher = GallerySearcher(store, DIGEST, index_dir=index_dir, faiss_min=200)
    found = searcher.search("big", probes[:300], top_k=1)
    assert searcher.status("big")["kind"] == "faiss"
    hits = np.mean([r[0].subject_id == f"p{i}" for i, r in enumerate(found)])
    assert hits >= 0.95
    assert len(list(index_dir.glob("*.faiss"))) == 1  # persisted after the build

    # Another process (a new searcher) loads the file, then catches up with changes.
    for i in range(300, 400):
        store.add_subject("big", f"p{i}", shots[i], DIGEST)
    store.delete_subject("big", "p0")
    later = GallerySearcher(store, DIGEST, index_dir=index_dir, faiss_min=200)
    found = later.search("big", probes, top_k=1)
    assert all(m.subject_id != "p0" for r in found for m in r)
    assert np.mean([r[0].subject_id == f"p{i}" for i, r in enumerate(found) if i]) >= 0.95
    status = later.status("big")
    np.testing.assert_array_equal(status["ids"], store.embedding_rows("big", DIGEST).ids)
    assert np.array_equal(np.sort(later._states["big"].index.all_ids()), status["ids"])


def test_a_corrupt_or_stale_index_file_is_rebuilt(store, tmp_path):
    shots, probes = _people(250, per=1, dim=32)
    store.create_gallery("g")
    for i, s in enumerate(shots):
        store.add_subject("g", f"p{i}", s, DIGEST)
    index_dir = tmp_path / "idx"
    GallerySearcher(store, DIGEST, index_dir=index_dir, faiss_min=100).search("g", probes[:1])
    [path] = index_dir.glob("*.faiss")
    path.write_bytes(b"garbage")
    searcher = GallerySearcher(store, DIGEST, index_dir=index_dir, faiss_min=100)
    assert searcher.search("g", probes[:5], top_k=1)[4][0].subject_id == "p4"
    assert path.stat().st_size > 1000  # rewritten


def test_exact_and_faiss_agree_on_clustered_embeddings():
    shots, probes = _people(500, per=4, dim=32, seed=3)
    vectors = shots.reshape(-1, 32)
    ids = np.arange(len(vectors)) * 7 + 3  # ids need not be dense
    exact = ExactIndex(ids, vectors)
    approx = FaissIndex.build(ids, vectors)
    _, want = exact.search(probes, 4)
    _, got = approx.search(probes, 4)
    recall = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(want, got, strict=True)])
    assert recall >= 0.95
    restored = FaissIndex.from_bytes(approx.to_bytes())
    np.testing.assert_array_equal(restored.search(probes, 4)[1], got)


def test_a_gallery_made_again_under_its_old_name_is_not_served_from_the_old_index(store):
    shots, probes = _people(2)
    searcher = GallerySearcher(store, DIGEST)
    store.create_gallery("g")
    store.add_subject("g", "p0", shots[0], DIGEST)
    assert searcher.search("g", probes[0])[0][0].subject_id == "p0"
    store.delete_gallery("g")  # by another process: this searcher is not told
    store.create_gallery("g")
    store.add_subject("g", "p1", shots[1], DIGEST)  # as many changes as before
    assert [m.subject_id for m in searcher.search("g", probes[0])[0]] == ["p1"]


def test_scale_figures_on_a_small_synthetic_gallery():
    from swinface.gallery.scale import format_figures, measure, synthetic_gallery

    vectors, labels = synthetic_gallery(600, dim=64, per_identity=3)
    same = vectors[labels == 0] @ vectors[labels == 0].T
    assert 0.5 < same[0, 1] < 0.9 and abs(float(vectors[0] @ vectors[-1])) < 0.5
    figures = measure(2000, dim=64, queries=10)
    assert [f.kind.split()[0] for f in figures] == ["exact", "faiss", "faiss"]
    assert figures[0].recall == 1.0 and all(0.8 <= f.recall <= 1.0 for f in figures[1:])
    assert "recall@5" in format_figures(figures)
