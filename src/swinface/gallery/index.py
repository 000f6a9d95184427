"""Nearest-neighbour search over one gallery's embeddings: exact, or a FAISS index when large.

Small galleries are searched exactly with one matrix product. Beyond
`faiss_min` embeddings an inverted-file FAISS index (`IndexIVFScalarQuantizer`,
8-bit, inner product on unit vectors) answers instead; `swinface bench-serve --scale`
measures where it starts to pay and what recall it keeps. The index is a
cache: it can always be rebuilt from the store.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from swinface.decode import unit_rows

log = logging.getLogger(__name__)

# Below this many embeddings exact search is about as fast as FAISS and always exact
# (measured by `swinface bench-serve --scale`; see docs/serve.md).
DEFAULT_FAISS_MIN = 20_000


def normalize(vectors: np.ndarray) -> np.ndarray:
    return unit_rows(np.asarray(vectors, np.float32))


class ExactIndex:
    """All vectors in one matrix; search is a matrix product."""

    kind = "exact"

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = np.asarray(ids, np.int64)
        self.vectors = normalize(vectors) if len(vectors) else np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (Q, k'), best first; k' = min(k, len)."""
        q = normalize(queries)
        if len(self.ids) == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        sims = q @ self.vectors.T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(sims, top, axis=1), self.ids[top]

    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes + self.ids.nbytes)


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "large galleries need FAISS: pip install 'swinface[serve]' (faiss-cpu)"
        ) from err
    return faiss


class FaissIndex:
    """An inverted-file index (IVF, 8-bit scalar-quantised lists, inner product) keyed by row id.

    `nlist` grows as the square root of the size (about 2 sqrt(N) lists, each
    trained on at least 39 points); `nprobe` visits 1/8 of the lists (at
    least 32): on synthetic face-like embeddings (random identities, the
    hardest case for an inverted file) that keeps recall at top-5 near 0.98.
    """

    kind = "faiss"

    def __init__(self, index, nprobe: int | None = None) -> None:
        self.index = index
        if nprobe is not None:
            self.index.nprobe = nprobe

    @staticmethod
    def lists_for(n: int) -> int:
        return max(1, min(int(2 * math.sqrt(n)), n // 39))

    @staticmethod
    def probes_for(nlist: int) -> int:
        return min(nlist, max(32, nlist // 8))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, seed: int = 0) -> FaissIndex:
        faiss = _faiss()
        vectors = normalize(vectors)
        n, dim = vectors.shape
        nlist = cls.lists_for(n)
        quantizer = faiss.IndexFlatIP(dim)
        # 8-bit scalar quantisation: a quarter of the memory and faster scans; on unit
        # vectors it moves a similarity by about 0.001, far below the gap between people.
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = 10
        index.cp.seed = seed
        # k-means on a sample: 64 points per list is plenty for the centroids.
        sample = min(n, nlist * 64)
        rng = np.random.default_rng(seed)
        train = vectors if sample == n else vectors[np.sort(rng.choice(n, sample, replace=False))]
        index.train(np.ascontiguousarray(train))
        index.add_with_ids(vectors, np.asarray(ids, np.int64))
        return cls(index, nprobe=cls.probes_for(nlist))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(normalize(vectors), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, np.int64))

    def all_ids(self) -> np.ndarray:
        """The ids held, read from the inverted lists."""
        faiss = _faiss()
        invlists = self.index.invlists
        parts = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self.index.search(normalize(queries), min(k, max(len(self), 1)))
        return sims, ids  # missing neighbours come back as id -1

    def to_bytes(self) -> bytes:
        return _faiss().serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> FaissIndex:
        faiss = _faiss()
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        return cls(index, nprobe=cls.probes_for(int(index.nlist)))

    def memory_bytes(self) -> int:
        return len(self) * (self.index.code_size + 8) + self.nlist * self.index.d * 4
