"""The gallery schema in PostgreSQL, for several service processes sharing one gallery.

Each process keeps its own search index; before a search it reads the
gallery's `generation` (bumped in the same transaction as every change), and
brings its index up to date when the number has moved. So an enrolment made
through one process is found by a search through any other as soon as it is
committed.
"""

from __future__ import annotations

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
        self._init_connections()
        with self._transaction() as cur:
            # One schema creation at a time when several processes start together.
            cur.execute("SELECT pg_advisory_xact_lock(4242001)")
            for statement in self._schema():
                cur.execute(statement)

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=False)

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
