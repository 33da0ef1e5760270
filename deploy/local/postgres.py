"""Make sure the PostgreSQL server the tests use answers (DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres). If it does not, start the machine's
cluster with pg_ctlcluster; never initdb as root. Exit 1 with a clear message otherwise."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def answers(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def start_cluster() -> bool:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or not os.path.exists("/usr/bin/pg_ctlcluster"):
        return False
    for version in reversed(versions):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            check=False,
        )
    return True


def main() -> int:
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        return 0  # another database was chosen on purpose
    problem = answers(url)
    if problem is None:
        return 0
    print(f"PostgreSQL does not answer ({problem}); starting the machine's cluster", file=sys.stderr)
    if start_cluster():
        for _ in range(60):
            if answers(url) is None:
                return 0
            time.sleep(0.5)
    print(
        f"PostgreSQL at {url.split('@')[-1]} does not answer: {answers(url)}.\n"
        "Start it (pg_ctlcluster <version> main start) or point DATABASE_URL at a server "
        "where the user may create databases.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
