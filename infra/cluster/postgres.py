"""PostgreSQL for the cluster's ``postgres`` host (and the tests): the server binaries of the
installed version, a data directory made once as the ``postgres`` user, the platform's role.

PostgreSQL refuses to run as root; ``setpriv`` drops to its user and then execs, so the
server itself is the process the supervisor starts and stops (``runuser`` would stay in
between as a parent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from infra.db_roles import conninfo

PG_USER = "postgres"


def pg_bin(name: str) -> str:
    """A PostgreSQL program of the newest installed version (Debian keeps them out of PATH)."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"PostgreSQL's {name} not found: install the postgresql package")


def as_pg_user(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return argv
    drop = ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups"]
    return [*drop, *argv]


def init_data_dir(directory: Path, owner: URL, allow_subnet: str) -> Path:
    """Make ``directory/pgdata`` once: ``owner``'s user as superuser with its password
    (scram), local socket connections trusted, and password logins from ``allow_subnet``."""
    data = directory / "pgdata"
    if (data / "PG_VERSION").exists():
        return data
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, PG_USER, PG_USER)
    pwfile = directory / ".initdb-password"
    pwfile.write_text(f"{owner.password}\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, PG_USER, PG_USER)
    pwfile.chmod(0o600)
    try:
        cmd = [pg_bin("initdb"), "-D", str(data), "-U", str(owner.username), "-E", "UTF8"]
        cmd += [f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256"]
        done = subprocess.run(as_pg_user(cmd), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    finally:
        pwfile.unlink(missing_ok=True)
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {allow_subnet} scram-sha-256\n")
    return data


def server_command(data: Path, address: str, port: int, socket_dir: Path) -> list[str]:
    socket_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(socket_dir, PG_USER, PG_USER)
    argv = [pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(socket_dir)]
    return as_pg_user([*argv, "-c", f"listen_addresses={address}"])


def answering(url: URL, timeout_s: int = 2) -> bool:
    """Whether the server accepts ``url``'s login (to its maintenance database)."""
    try:
        with psycopg.connect(conninfo(url, "postgres"), connect_timeout=timeout_s):
            return True
    except psycopg.Error:
        return False
