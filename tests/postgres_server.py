"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, pg_ctl start, stop.

`$SWINFACE_TEST_POSTGRES` (a postgresql:// URL to a server where the user may
create databases) is used instead when set. Otherwise Debian's `postgresql`
package provides initdb and pg_ctl; as root the server runs as the `postgres`
user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> str | None:
    """None when a server can be had; else the reason it cannot."""
    if os.environ.get("SWINFACE_TEST_POSTGRES"):
        return None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "needs psycopg (pip install 'psycopg[binary]')"
    if not (_binary("initdb") and _binary("pg_ctl")):
        return "needs PostgreSQL's initdb and pg_ctl: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root needs a 'postgres' user to run the server as"
    return None


class PostgresServer:
    def __init__(self) -> None:
        self.url = os.environ.get("SWINFACE_TEST_POSTGRES")
        self.folder: Path | None = None

    def _run(self, *cmd: str) -> None:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        if self.url:
            return self
        self.folder = Path(tempfile.mkdtemp(prefix="swinface-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._run(_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "swinface", "--no-sync")
        options = f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"),
            "-w", "start",
        )  # fmt: skip
        self.url = f"postgresql://swinface@127.0.0.1:{port}/postgres"
        return self

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # a generated name, not user input
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.folder is None:
            return
        self._run(_binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
