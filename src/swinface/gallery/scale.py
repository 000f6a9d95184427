"""How gallery search scales: exact against FAISS, up to a million synthetic embeddings.

Synthetic face-like embeddings: identities are random unit directions, and
each identity's embeddings scatter around its direction (cosine about 0.7
between two photos of one person, about 0 between people), as with real face
embeddings. Queries are fresh photos of enrolled identities. Recall is the
share of the exact top-k that the index returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from swinface.gallery.index import ExactIndex, FaissIndex, normalize


def synthetic_gallery(
    n: int, dim: int = 512, per_identity: int = 5, seed: int = 0, chunk: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, dim) float32, identity of each); built in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    identities = -(-n // per_identity)
    centres = normalize(rng.standard_normal((identities, dim), dtype=np.float32))
    labels = np.repeat(np.arange(identities), per_identity)[:n]
    out = np.empty((n, dim), np.float32)
    noise = 0.65 / np.sqrt(dim)  # two photos of one person: cosine about 0.7
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = centres[labels[start:stop]]
        block += rng.standard_normal(block.shape, dtype=np.float32) * noise
        out[start:stop] = normalize(block)
    return out, labels


def queries_for(embeddings: np.ndarray, labels: np.ndarray, count: int, seed: int = 1):
    """Fresh photos of `count` enrolled identities: their mean direction plus new noise."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(labels.max() + 1, count, replace=False)
    dim = embeddings.shape[1]
    centres = np.stack([embeddings[labels == c].mean(0) for c in chosen])
    q = normalize(centres) + rng.standard_normal((count, dim), dtype=np.float32) * (
        0.65 / np.sqrt(dim)
    )
    return normalize(q)


@dataclass
class SearchFigure:
    size: int
    kind: str
    build_s: float
    p50_ms: float
    p99_ms: float
    recall: float | None
    memory_mib: float


def _latencies(index, queries: np.ndarray, k: int) -> np.ndarray:
    index.search(queries[:2], k)  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def measure(size: int, *, dim: int = 512, k: int = 5, queries: int = 200, exact: bool = True):
    """Exact and FAISS figures at one gallery size."""
    vectors, labels = synthetic_gallery(size, dim)
    ids = np.arange(size, dtype=np.int64)
    q = queries_for(vectors, labels, queries)
    figures = []
    start = time.perf_counter()
    ex = ExactIndex(ids, vectors)
    build = time.perf_counter() - start
    _, truth = ex.search(q, k)  # batched: the reference answers
    if exact:
        lat = _latencies(ex, q[: min(queries, 50)], k)
        figures.append(
            SearchFigure(
                size, "exact", build, *np.percentile(lat, [50, 99]), 1.0, ex.memory_bytes() / 2**20
            )
        )
    del ex
    start = time.perf_counter()
    fi = FaissIndex.build(ids, vectors)
    build = time.perf_counter() - start
    del vectors
    default = fi.index.nprobe
    for nprobe in (default // 2, default):  # half the lists the default rule visits, and those
        fi.index.nprobe = min(nprobe, fi.nlist)
        _, found = fi.search(q, k)
        recall = float(
            np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)])
        )
        lat = _latencies(fi, q, k)
        figures.append(
            SearchFigure(size, f"faiss (nlist {fi.nlist}, nprobe {fi.index.nprobe})", build,
                         *np.percentile(lat, [50, 99]), recall, fi.memory_bytes() / 2**20)
        )  # fmt: skip
    return figures


def format_figures(figures: list[SearchFigure]) -> str:
    head = f"{'embeddings':>10} {'search':<30} {'build s':>8} {'p50 ms':>7} {'p99 ms':>7} {'recall@5':>8} {'index MiB':>9}"
    lines = [head, "-" * len(head)]
    for f in figures:
        recall = f"{f.recall:.3f}" if f.recall is not None else ""
        lines.append(
            f"{f.size:>10} {f.kind:<30} {f.build_s:>8.1f} {f.p50_ms:>7.2f} {f.p99_ms:>7.2f} {recall:>8} {f.memory_mib:>9.0f}"
        )
    return "\n".join(lines)
