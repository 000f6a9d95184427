"""The gallery schema in PostgreSQL, for several service processes sharing one gallery.

Each process keeps its own search index; before a search it reads the
gallery's `generation` (bumped in the same transaction as every change), and
brings its index up to date when the number has moved. So an enrolment made
through one process is found by a search through any other as soon as it is
committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from swinface.gallery.store import SQLStore


class PostgresStore(SQLStore):
    """Galleries in a PostgreSQL database named by a `postgresql://` URL (psycopg 3)."""

    paramstyle = "%s"
    blob_type = "BYTEA"
    id_column = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        try:
            import psycopg
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(
                "the PostgreSQL store needs psycopg: pip install 'swinface[serve]'"
            ) from err
        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        with self._transaction() as cur:
            # One schema creation at a time when several processes start together.
            cur.execute("SELECT pg_advisory_xact_lock(4242001)")
            for statement in self._schema():
                cur.execute(statement)

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._psycopg.connect(self.url, autocommit=False)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        conn = self._connection()
        cur = conn.cursor()
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def _is_unique_violation(self, err: Exception) -> bool:
        return isinstance(err, self._psycopg.errors.UniqueViolation)

    def integrity_check(self) -> str:
        with self._transaction() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM embeddings e LEFT JOIN subjects s"
                " ON s.gallery = e.gallery AND s.subject_id = e.subject_id"
                " WHERE s.subject_id IS NULL"
            )
            orphans = cur.fetchone()[0]
        return "ok" if orphans == 0 else f"{orphans} embeddings without a subject"

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
