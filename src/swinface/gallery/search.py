"""1:N identification over a gallery: an index per gallery, kept in step with the store.

Each process holds one index per gallery, built from the store on first use
and persisted (FAISS indexes only; exact ones are cheap to rebuild) beside
the data. Before every search it reads the gallery's `generation`; when that
has moved (an enrolment or deletion, by this process or another sharing the
database), it brings the index up to date: new rows are added, deleted rows
removed, without retraining. A missing, unreadable or foreign index file is
simply rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swinface.atomic import atomic_write_bytes
from swinface.gallery.index import DEFAULT_FAISS_MIN, ExactIndex, FaissIndex
from swinface.gallery.store import (
    DigestMismatch,
    EmbeddingRows,
    GalleryStore,
    UnknownGallery,
    mismatch_message,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    subject_id: str
    similarity: float


@dataclass
class _State:
    generation: int
    index: ExactIndex | FaissIndex
    ids: np.ndarray  # sorted row ids in the index
    subjects: np.ndarray  # object array: subject of ids[i]
    others: dict[str, int]  # embeddings of other weights in the gallery
    dirty: bool = False  # changed since it was persisted


class GallerySearcher:
    """Top-k subjects for query embeddings, for one set of weights (`digest`)."""

    def __init__(
        self,
        store: GalleryStore,
        digest: str,
        *,
        index_dir: str | Path | None = None,
        faiss_min: int = DEFAULT_FAISS_MIN,
    ) -> None:
        self.store = store
        self.digest = digest
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.faiss_min = faiss_min
        self._states: dict[str, _State] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, gallery: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(gallery, threading.Lock())

    # -- persisted FAISS indexes

    def _paths(self, gallery: str) -> tuple[Path, Path] | None:
        if self.index_dir is None:
            return None
        key = hashlib.sha256(gallery.encode()).hexdigest()[:16]
        stem = self.index_dir / f"{key}-{self.digest[:16]}"
        return stem.with_suffix(".faiss"), stem.with_suffix(".json")

    def _load_persisted(self, gallery: str) -> FaissIndex | None:
        paths = self._paths(gallery)
        if paths is None or not paths[0].is_file() or not paths[1].is_file():
            return None
        try:
            meta = json.loads(paths[1].read_text())
            if meta.get("gallery") != gallery or meta.get("digest") != self.digest:
                return None
            index = FaissIndex.from_bytes(paths[0].read_bytes())
            if len(index) != meta.get("count"):
                raise ValueError("index size differs from its record")
            return index
        except Exception as err:  # an unreadable cache is rebuilt, never trusted
            log.warning("index for gallery %r is unreadable (%s); rebuilding it", gallery, err)
            return None

    def _persist(self, gallery: str, state: _State) -> None:
        paths = self._paths(gallery)
        if paths is None or not isinstance(state.index, FaissIndex):
            return
        meta = {
            "gallery": gallery,
            "digest": self.digest,
            "generation": state.generation,
            "count": len(state.index),
        }
        # Index first, then its record: a crash between them leaves a record that
        # does not match, and the index is rebuilt.
        atomic_write_bytes(paths[0], state.index.to_bytes())
        atomic_write_bytes(paths[1], json.dumps(meta).encode())
        state.dirty = False

    def _drop_persisted(self, gallery: str) -> None:
        paths = self._paths(gallery)
        if paths is not None:
            for p in paths:
                p.unlink(missing_ok=True)

    def persist_all(self) -> None:
        """Write every index changed since it was last written (at shutdown)."""
        for gallery, state in list(self._states.items()):
            if state.dirty:
                with self._lock(gallery):
                    self._persist(gallery, state)

    # -- keeping in step with the store

    def _build(self, gallery: str, generation: int, others: dict[str, int]) -> _State:
        rows = self.store.embedding_rows(gallery, self.digest)
        if len(rows.ids) >= self.faiss_min:
            index: ExactIndex | FaissIndex = FaissIndex.build(rows.ids, rows.vectors)
        else:
            index = ExactIndex(rows.ids, rows.vectors)
        state = _State(generation, index, rows.ids, np.array(rows.subjects, object), others, True)
        self._persist(gallery, state)
        return state

    def _catch_up(self, gallery: str, state: _State, generation: int) -> _State:
        """Add new rows and remove deleted ones (FAISS); rebuild small exact indexes."""
        current = self.store.embedding_rows(gallery, self.digest, vectors=False)
        others = {d: n for d, n in self.store.digest_counts(gallery).items() if d != self.digest}
        size = len(current.ids)
        exact_fits = size < self.faiss_min
        if not isinstance(state.index, FaissIndex) or exact_fits and size < self.faiss_min // 2:
            return self._build(gallery, generation, others)
        removed = np.setdiff1d(state.ids, current.ids, assume_unique=True)
        added = np.setdiff1d(current.ids, state.ids, assume_unique=True)
        if len(added):
            new = self.store.embedding_rows(gallery, self.digest, ids=added)
            state.index.add(new.ids, new.vectors)
        state.index.remove(removed)
        if len(removed):
            self._drop_persisted(gallery)  # deleted faces must not survive in a file
        state.ids, state.subjects = current.ids, np.array(current.subjects, object)
        state.generation, state.others = generation, others
        state.dirty = state.dirty or bool(len(added) or len(removed))
        return state

    def _state(self, gallery: str) -> _State:
        generation = self.store.generation(gallery)  # raises UnknownGallery
        state = self._states.get(gallery)
        if state is not None and state.generation == generation:
            return state
        if state is None:
            others = {
                d: n for d, n in self.store.digest_counts(gallery).items() if d != self.digest
            }
            loaded = self._load_persisted(gallery)
            if loaded is None:
                state = self._build(gallery, generation, others)
            else:
                empty = EmbeddingRows(loaded.all_ids(), [])
                state = _State(-1, loaded, empty.ids, np.array([], object), others)
                state = self._catch_up(gallery, state, generation)
        else:
            state = self._catch_up(gallery, state, generation)
        self._states[gallery] = state
        return state

    def forget(self, gallery: str) -> None:
        """Drop a deleted gallery's index, in memory and on disk."""
        with self._lock(gallery):
            self._states.pop(gallery, None)
            self._drop_persisted(gallery)

    def status(self, gallery: str) -> dict:
        with self._lock(gallery):
            state = self._state(gallery)
            return {
                "kind": state.index.kind,
                "size": len(state.index),
                "generation": state.generation,
                "ids": state.ids.copy(),
            }

    def search(self, gallery: str, queries: np.ndarray, top_k: int = 5) -> list[list[Match]]:
        """For each query embedding, the `top_k` subjects by their best-matching embedding."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        with self._lock(gallery):
            try:
                state = self._state(gallery)
            except UnknownGallery:
                self._states.pop(gallery, None)
                raise
            if state.others:
                raise DigestMismatch(mismatch_message(gallery, self.digest, state.others))
            # A subject may hold several embeddings: look further, keep each subject's best.
            sims, ids = state.index.search(queries, max(top_k * 4, top_k + 8))
            ids_sorted, subjects = state.ids, state.subjects
        results = []
        for row_sims, row_ids in zip(sims, ids, strict=True):
            best: dict[str, float] = {}
            for s, i in zip(row_sims, row_ids, strict=True):
                if i < 0:
                    continue
                pos = int(np.searchsorted(ids_sorted, i))
                if pos >= len(ids_sorted) or ids_sorted[pos] != i:
                    continue  # removed from the store since the index last caught up
                subject = subjects[pos]
                if subject not in best:
                    best[subject] = float(s)
            ranked = sorted(best.items(), key=lambda kv: -kv[1])[:top_k]
            results.append([Match(sub, sim) for sub, sim in ranked])
        return results
