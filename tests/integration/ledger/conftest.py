"""A real PostgreSQL for the ledger: ``initdb`` into a temporary folder, loopback only.

PostgreSQL refuses to run as root; when the tests run as root the server runs as the
``postgres`` system user (Debian's package creates it). One server per session; every test
gets a fresh database. The server is stopped (fast shutdown) in teardown.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require, wait_sync

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SUPERUSER = "tensorgate"


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def dsn(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            conn.execute(sql)


def _initdb(bin_dir: Path, prefix: str, user: str | None) -> Path:
    """A temporary folder with a fresh cluster in ``data`` and a socket folder ``run``, both
    owned by ``user`` (the server refuses to run as root)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "run").mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (workdir, workdir / "run"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(workdir / "data"),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        user=user,
    )
    return workdir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    bin_dir = _bin_dir()
    require(
        bin_dir is not None,
        "PostgreSQL server binaries (initdb)",
        "make system-deps (apt-get install postgresql)",
    )
    assert bin_dir is not None
    user: str | None = None
    if os.geteuid() == 0:
        require(
            _has_user("postgres"),
            "the postgres system user",
            "apt-get install postgresql (it creates the user)",
        )
        user = "postgres"
    workdir = _initdb(bin_dir, "tensorgate-pg-", user)
    data, sockets = workdir / "data", workdir / "run"
    log = workdir / "postgres.log"
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
        )
    server = Postgres("127.0.0.1", port)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"postgres exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            server.execute("SELECT 1")
            return True
        except Exception:
            return False

    try:
        wait_sync(ready, timeout_s=START_TIMEOUT_S, every_s=0.2, what="postgres accepting")
        yield server
    finally:
        proc.send_signal(2)  # SIGINT: fast shutdown
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        shutil.rmtree(workdir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def postgres_dsn(postgres_server: Postgres) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.dsn(name)
    finally:
        with contextlib.suppress(Exception):
            postgres_server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger's DSN on each real database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_dsn"))


@dataclass(frozen=True)
class RestartablePostgres:
    """A PostgreSQL of its own (not the session's), stopped and started with ``pg_ctl``."""

    server: Postgres
    bin_dir: Path
    workdir: Path
    user: str | None

    def dsn(self, database: str) -> str:
        return self.server.dsn(database)

    def _pg_ctl(self, *args: str) -> None:
        log = self.workdir / "postgres.log"
        done = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.workdir / "data"), *args],
            capture_output=True,
            timeout=START_TIMEOUT_S + 10,
            user=self.user,
            check=False,
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise AssertionError(
                f"pg_ctl {' '.join(args)} exited {done.returncode}: {done.stderr.decode()}{tail}"
            )

    def start(self) -> None:
        options = (
            f"-p {self.server.port} -k {self.workdir / 'run'} "
            "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        )
        timeout = str(int(START_TIMEOUT_S))
        log = str(self.workdir / "postgres.log")
        self._pg_ctl("start", "-w", "-t", timeout, "-l", log, "-o", options)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open connections are cut, new ones refused."""
        self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(int(STOP_TIMEOUT_S)))


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A fresh server with one database, ``ledger``, that the test may stop and start."""
    bin_dir = _bin_dir()
    require(
        bin_dir is not None,
        "PostgreSQL server binaries (initdb, pg_ctl)",
        "make system-deps (apt-get install postgresql)",
    )
    assert bin_dir is not None
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        require(_has_user(user), "the postgres system user", "apt-get install postgresql")
    workdir = _initdb(bin_dir, "tensorgate-pg-restart-", user)
    server = RestartablePostgres(Postgres("127.0.0.1", _free_port()), bin_dir, workdir, user)
    server.start()
    try:
        server.server.execute('CREATE DATABASE "ledger"')
        yield server
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
