"""A throwaway PostgreSQL cluster for the tests that prove the store's guarantees hold there too.

Debian's postgresql package provides the binaries; the cluster lives in a temporary directory owned
by the `postgres` user, listens on 127.0.0.1 only, and is removed afterwards. Each test gets a fresh
database in it.
"""
from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["Cluster"]


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: install Debian's postgresql package (lab/setup.sh does)")
    return found[-1]


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="remediator-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as_postgres(_bin("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "remediator", "--no-sync")
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-w", "-l", str(self.dir / "log"), "-o",
                          f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on", "start")

    def _as_postgres(self, *argv: str) -> None:
        r = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {r.stderr[-1500:]}")

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=remediator dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://remediator@127.0.0.1:{self.port}/{name}"

    def down(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def up(self) -> None:
        """Start it again after down()."""
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-w", "-l", str(self.dir / "log"), "-o",
                          f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on", "start")

    def stop(self) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
