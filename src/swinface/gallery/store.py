"""Gallery storage: galleries, subjects and their face embeddings, in SQLite or PostgreSQL.

Both stores share one schema and one implementation (`SQLStore`); only the
connection, the placeholder style and a few DDL words differ. Every change to
a gallery bumps its `generation` in the same transaction, so a search index
(`swinface.gallery.index`) knows when it is stale, whichever process made the
change. Embeddings are float32 and carry the digest of the weights that made
them: vectors from different weights are never compared.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swinface.errors import SwinFaceError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class GalleryError(SwinFaceError):
    """A gallery request that cannot be carried out; `status` is its HTTP status."""

    status = 400


class UnknownGallery(GalleryError):
    status = 404


class UnknownSubject(GalleryError):
    status = 404


class AlreadyExists(GalleryError):
    status = 409


class DigestMismatch(GalleryError):
    """The gallery holds embeddings made by other weights than the ones asked to compare."""

    status = 409


def check_name(kind: str, value: str) -> str:
    """Gallery names and subject ids: 1-128 letters, digits, '_', '.', '-' (they appear in URLs)."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise GalleryError(
            f"{kind} {value!r}: use 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class GalleryInfo:
    name: str
    created: float
    subjects: int
    embeddings: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectInfo:
    gallery: str
    subject_id: str
    name: str
    created: float
    embeddings: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class EmbeddingRows:
    """Embeddings of one gallery: row ids, their subjects and (optionally) the vectors."""

    ids: np.ndarray  # int64 (N,)
    subjects: list[str]
    vectors: np.ndarray | None = None  # float32 (N, d)


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _vector(blob: Any, dim: int) -> np.ndarray:
    v = np.frombuffer(bytes(blob), dtype="<f4")
    if v.size != dim:
        raise GalleryError(f"a stored embedding has {v.size} values, its row says {dim}")
    return v


class GalleryStore(ABC):
    """The small interface the service needs from a gallery store."""

    @abstractmethod
    def create_gallery(self, name: str, metadata: dict | None = None) -> GalleryInfo: ...

    @abstractmethod
    def list_galleries(self) -> list[GalleryInfo]: ...

    @abstractmethod
    def get_gallery(self, name: str) -> GalleryInfo: ...

    @abstractmethod
    def delete_gallery(self, name: str) -> None: ...

    @abstractmethod
    def add_subject(
        self,
        gallery: str,
        subject_id: str,
        embeddings: np.ndarray,
        digest: str,
        *,
        name: str = "",
        metadata: dict | None = None,
    ) -> SubjectInfo: ...

    @abstractmethod
    def list_subjects(self, gallery: str) -> list[SubjectInfo]: ...

    @abstractmethod
    def get_subject(self, gallery: str, subject_id: str) -> SubjectInfo: ...

    @abstractmethod
    def delete_subject(self, gallery: str, subject_id: str) -> None: ...

    @abstractmethod
    def generation(self, gallery: str) -> int: ...

    @abstractmethod
    def digest_counts(self, gallery: str) -> dict[str, int]: ...

    @abstractmethod
    def embedding_rows(
        self, gallery: str, digest: str, *, ids: Sequence[int] | None = None, vectors: bool = True
    ) -> EmbeddingRows: ...

    @abstractmethod
    def integrity_check(self) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional for stores without resources
        pass


class SQLStore(GalleryStore):
    """The gallery schema on a DB-API connection; subclasses say how to connect.

    SQL is written with `?` placeholders, always with parameters (never string
    formatting of values); stores whose driver wants `%s` set `paramstyle`.
    """

    paramstyle = "?"
    blob_type = "BLOB"
    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def _schema(self) -> list[str]:
        return [
            """CREATE TABLE IF NOT EXISTS galleries (
                name TEXT PRIMARY KEY,
                metadata TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                generation BIGINT NOT NULL DEFAULT 0)""",
            """CREATE TABLE IF NOT EXISTS subjects (
                gallery TEXT NOT NULL REFERENCES galleries(name) ON DELETE CASCADE,
                subject_id TEXT NOT NULL,
                name TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (gallery, subject_id))""",
            f"""CREATE TABLE IF NOT EXISTS embeddings (
                id {self.id_column},
                gallery TEXT NOT NULL,
                subject_id TEXT NOT NULL,
                digest TEXT NOT NULL,
                dim INTEGER NOT NULL,
                vector {self.blob_type} NOT NULL,
                FOREIGN KEY (gallery, subject_id)
                    REFERENCES subjects(gallery, subject_id) ON DELETE CASCADE)""",
            "CREATE INDEX IF NOT EXISTS embeddings_by_gallery ON embeddings (gallery, digest)",
            "CREATE INDEX IF NOT EXISTS embeddings_by_subject ON embeddings (gallery, subject_id)",
        ]

    # Statement that opens a write transaction, where the driver does not open one itself.
    begin: str | None = None

    # -- connection handling: one connection per thread; subclasses say how to open one

    def _init_connections(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection, set up for this store."""

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(conn, "closed", False):
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed when the block ends, rolled back on error."""
        conn = self._connection()
        cur = conn.cursor()
        if self.begin:
            cur.execute(self.begin)
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @abstractmethod
    def _is_unique_violation(self, err: Exception) -> bool: ...

    def _sql(self, text: str) -> str:
        return text if self.paramstyle == "?" else text.replace("?", self.paramstyle)

    def _run(self, cur, text: str, params: Sequence = ()) -> Any:
        cur.execute(self._sql(text), tuple(params))
        return cur

    # -- galleries

    def create_gallery(self, name: str, metadata: dict | None = None) -> GalleryInfo:
        check_name("gallery", name)
        created = time.time()
        try:
            with self._transaction() as cur:
                self._run(
                    cur,
                    "INSERT INTO galleries (name, metadata, created, generation) VALUES (?, ?, ?, ?)",
                    # A gallery made again under an old name starts from a new number, so no
                    # index cached for the old one can pass for up to date.
                    (name, json.dumps(metadata or {}), created, time.time_ns() // 1000),
                )
        except Exception as err:
            if self._is_unique_violation(err):
                raise AlreadyExists(f"gallery {name!r} already exists") from None
            raise
        return GalleryInfo(name, created, 0, 0, dict(metadata or {}))

    def _gallery_rows(self, cur, where: str = "", params: Sequence = ()) -> list[GalleryInfo]:
        rows = self._run(
            cur,
            "SELECT g.name, g.created, g.metadata,"
            " (SELECT COUNT(*) FROM subjects s WHERE s.gallery = g.name),"
            " (SELECT COUNT(*) FROM embeddings e WHERE e.gallery = g.name)"
            f" FROM galleries g {where} ORDER BY g.name",
            params,
        ).fetchall()
        return [
            GalleryInfo(r[0], float(r[1]), int(r[3]), int(r[4]), json.loads(r[2])) for r in rows
        ]

    def list_galleries(self) -> list[GalleryInfo]:
        with self._transaction() as cur:
            return self._gallery_rows(cur)

    def get_gallery(self, name: str) -> GalleryInfo:
        with self._transaction() as cur:
            rows = self._gallery_rows(cur, "WHERE g.name = ?", (name,))
        if not rows:
            raise UnknownGallery(f"gallery {name!r} does not exist")
        return rows[0]

    def delete_gallery(self, name: str) -> None:
        with self._transaction() as cur:
            self._require_gallery(cur, name)
            # Embeddings first: their cascade runs through subjects, but explicit is clearer.
            self._run(cur, "DELETE FROM embeddings WHERE gallery = ?", (name,))
            self._run(cur, "DELETE FROM subjects WHERE gallery = ?", (name,))
            self._run(cur, "DELETE FROM galleries WHERE name = ?", (name,))
        self._after_delete()

    def _require_gallery(self, cur, name: str) -> None:
        if self._run(cur, "SELECT 1 FROM galleries WHERE name = ?", (name,)).fetchone() is None:
            raise UnknownGallery(f"gallery {name!r} does not exist")

    def _bump(self, cur, gallery: str) -> None:
        self._run(
            cur, "UPDATE galleries SET generation = generation + 1 WHERE name = ?", (gallery,)
        )

    def _after_delete(self) -> None:
        """Hook for stores that must do more for deleted data to be gone (SQLite: checkpoint)."""

    # -- subjects

    def add_subject(
        self,
        gallery: str,
        subject_id: str,
        embeddings: np.ndarray,
        digest: str,
        *,
        name: str = "",
        metadata: dict | None = None,
    ) -> SubjectInfo:
        """Add a subject and its embeddings in one transaction: all of it, or nothing."""
        check_name("subject_id", subject_id)
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise GalleryError(f"subject {subject_id!r}: expected a (n, d) array of embeddings")
        if not np.isfinite(vectors).all():
            raise GalleryError(f"subject {subject_id!r}: embeddings contain NaN or infinity")
        created = time.time()
        try:
            with self._transaction() as cur:
                self._require_gallery(cur, gallery)
                self._refuse_other_digests(cur, gallery, digest)
                self._run(
                    cur,
                    "INSERT INTO subjects (gallery, subject_id, name, metadata, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (gallery, subject_id, name or subject_id, json.dumps(metadata or {}), created),
                )
                cur.executemany(
                    self._sql(
                        "INSERT INTO embeddings (gallery, subject_id, digest, dim, vector)"
                        " VALUES (?, ?, ?, ?, ?)"
                    ),
                    [(gallery, subject_id, digest, vectors.shape[1], _blob(v)) for v in vectors],
                )
                self._bump(cur, gallery)
        except Exception as err:
            if self._is_unique_violation(err):
                raise AlreadyExists(
                    f"subject {subject_id!r} already exists in gallery {gallery!r}; "
                    "delete it first to enrol it again"
                ) from None
            raise
        return SubjectInfo(
            gallery, subject_id, name or subject_id, created, len(vectors), dict(metadata or {})
        )

    def _refuse_other_digests(self, cur, gallery: str, digest: str) -> None:
        row = self._run(
            cur,
            "SELECT digest, COUNT(*) FROM embeddings WHERE gallery = ? AND digest <> ?"
            " GROUP BY digest",
            (gallery, digest),
        ).fetchone()
        if row is not None:
            raise DigestMismatch(mismatch_message(gallery, digest, {row[0]: int(row[1])}))

    def _subject_rows(self, cur, where: str, params: Sequence) -> list[SubjectInfo]:
        rows = self._run(
            cur,
            "SELECT s.gallery, s.subject_id, s.name, s.created, s.metadata,"
            " (SELECT COUNT(*) FROM embeddings e"
            "  WHERE e.gallery = s.gallery AND e.subject_id = s.subject_id)"
            f" FROM subjects s {where} ORDER BY s.subject_id",
            params,
        ).fetchall()
        return [
            SubjectInfo(r[0], r[1], r[2], float(r[3]), int(r[5]), json.loads(r[4])) for r in rows
        ]

    def list_subjects(self, gallery: str) -> list[SubjectInfo]:
        with self._transaction() as cur:
            self._require_gallery(cur, gallery)
            return self._subject_rows(cur, "WHERE s.gallery = ?", (gallery,))

    def get_subject(self, gallery: str, subject_id: str) -> SubjectInfo:
        with self._transaction() as cur:
            self._require_gallery(cur, gallery)
            rows = self._subject_rows(
                cur, "WHERE s.gallery = ? AND s.subject_id = ?", (gallery, subject_id)
            )
        if not rows:
            raise UnknownSubject(f"subject {subject_id!r} is not in gallery {gallery!r}")
        return rows[0]

    def delete_subject(self, gallery: str, subject_id: str) -> None:
        with self._transaction() as cur:
            self._require_gallery(cur, gallery)
            self._run(
                cur,
                "DELETE FROM embeddings WHERE gallery = ? AND subject_id = ?",
                (gallery, subject_id),
            )
            deleted = self._run(
                cur,
                "DELETE FROM subjects WHERE gallery = ? AND subject_id = ?",
                (gallery, subject_id),
            ).rowcount
            if deleted == 0:
                raise UnknownSubject(f"subject {subject_id!r} is not in gallery {gallery!r}")
            self._bump(cur, gallery)
        self._after_delete()

    # -- what the index reads

    def generation(self, gallery: str) -> int:
        with self._transaction() as cur:
            row = self._run(
                cur, "SELECT generation FROM galleries WHERE name = ?", (gallery,)
            ).fetchone()
        if row is None:
            raise UnknownGallery(f"gallery {gallery!r} does not exist")
        return int(row[0])

    def digest_counts(self, gallery: str) -> dict[str, int]:
        with self._transaction() as cur:
            rows = self._run(
                cur,
                "SELECT digest, COUNT(*) FROM embeddings WHERE gallery = ? GROUP BY digest",
                (gallery,),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def embedding_rows(
        self, gallery: str, digest: str, *, ids: Sequence[int] | None = None, vectors: bool = True
    ) -> EmbeddingRows:
        """Rows of `gallery` made by `digest` (only `ids` when given), in id order."""
        columns = "id, subject_id, dim, vector" if vectors else "id, subject_id"
        rows: list = []
        with self._transaction() as cur:
            if ids is None:
                rows = self._run(
                    cur,
                    f"SELECT {columns} FROM embeddings WHERE gallery = ? AND digest = ? ORDER BY id",
                    (gallery, digest),
                ).fetchall()
            else:
                wanted = [int(i) for i in ids]
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    rows += self._run(
                        cur,
                        f"SELECT {columns} FROM embeddings WHERE gallery = ? AND digest = ?"
                        f" AND id IN ({marks})",
                        (gallery, digest, *chunk),
                    ).fetchall()
                rows.sort(key=lambda r: r[0])
        out = EmbeddingRows(np.array([r[0] for r in rows], np.int64), [r[1] for r in rows])
        if vectors:
            dim = int(rows[0][2]) if rows else 0
            out.vectors = (
                np.stack([_vector(r[3], int(r[2])) for r in rows]).astype(np.float32)
                if rows
                else np.zeros((0, dim), np.float32)
            )
        return out


def mismatch_message(gallery: str, digest: str, others: dict[str, int]) -> str:
    """Say which weights made the gallery's embeddings and how to get a comparable gallery."""
    found = ", ".join(f"{n} made by weights {d[:12]}" for d, n in others.items())
    return (
        f"gallery {gallery!r} holds embeddings from other weights ({found}); these weights are "
        f"{digest[:12]}. Embeddings of different weights cannot be compared: serve with the "
        "weights that made the gallery, or re-enrol its subjects with these weights "
        "(delete each subject and enrol it again from its photos, or enrol into a new gallery)"
    )


class SQLiteStore(SQLStore):
    """Galleries in one SQLite file, in WAL mode (readers never wait for the writer).

    `synchronous=FULL` makes every acknowledged change survive a crash or a
    power cut; `secure_delete` overwrites deleted subjects' data in the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_connections()
        with self._transaction() as cur:
            for statement in self._schema():
                cur.execute(statement)

    # Autocommit mode; write transactions are opened explicitly, taking the lock at once.
    begin = "BEGIN IMMEDIATE"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")
        return conn

    def _is_unique_violation(self, err: Exception) -> bool:
        return isinstance(err, sqlite3.IntegrityError) and "UNIQUE" in str(err)

    def _after_delete(self) -> None:
        # Move deleted (and zeroed) pages out of the WAL into the main file.
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_check(self) -> str:
        return str(self._connection().execute("PRAGMA integrity_check").fetchone()[0])


def open_store(spec: str | Path, data_dir: str | Path | None = None) -> GalleryStore:
    """A store from `--store`: 'sqlite' (in `data_dir`), a .sqlite path, or a postgresql:// URL."""
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        from swinface.gallery.postgres import PostgresStore

        return PostgresStore(text)
    if text == "sqlite":
        if data_dir is None:
            raise ValueError("store 'sqlite' needs a data folder")
        return SQLiteStore(Path(data_dir) / "galleries.sqlite")
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SQLiteStore(text)
