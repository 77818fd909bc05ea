"""Databases for the store tests: SQLite in a temporary folder, and PostgreSQL.

PostgreSQL comes from ``$ELECTRODE_QC_TEST_PG`` (a server URL whose user may create
databases; ``.ci/postgres.sh`` starts one and sets it) or else from a throwaway cluster this
session starts on 127.0.0.1 with the local server binaries (``initdb``/``pg_ctl`` on PATH or
under /usr/lib/postgresql/*/bin) and stops at the end. Without binaries the PostgreSQL tests
skip, or fail when ``$ELECTRODE_QC_REQUIRE_PG`` is set (CI). Each test gets a new database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]


def _bindir() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _cluster(bindir: Path) -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1 (trust auth, no fsync) for this session."""
    tmp = Path(tempfile.mkdtemp(prefix="electrode-qc-pg-"))
    kw: dict = {}
    if os.geteuid() == 0:  # the server refuses to run as root: run it as postgres or nobody
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pw = pwd.getpwnam(name)
                break
        else:
            shutil.rmtree(tmp)
            pytest.skip("running as root and neither a postgres nor a nobody user exists")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "LC_ALL": "C",
           "HOME": str(tmp)}
    data, port = tmp / "data", _free_port()

    def pg(*args: str) -> None:
        res = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True,
                             timeout=120, check=False, **kw)
        if res.returncode:
            log = (tmp / "log").read_text() if (tmp / "log").exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{res.stdout}{res.stderr}{log}")

    started = False
    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
           "-E", "UTF8", "--no-sync", "--no-instructions")
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={tmp} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-o", opts,
           "-w", "-t", "60", "start")
        started = True
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server (its maintenance database) the tests may use."""
    url = os.environ.get("ELECTRODE_QC_TEST_PG")
    if url:
        yield url
        return
    bindir = _bindir()
    if bindir is None:
        why = ("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under "
               "/usr/lib/postgresql/*/bin, and ELECTRODE_QC_TEST_PG is not set")
        if os.environ.get("ELECTRODE_QC_REQUIRE_PG"):
            pytest.fail(f"ELECTRODE_QC_REQUIRE_PG is set but {why}")
        pytest.skip(why)
    with _cluster(bindir) as url:
        yield url


@pytest.fixture(scope="session")
def pg_admin(pg_server):
    import sqlalchemy as sa

    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(pg_server), isolation_level="AUTOCOMMIT",
                              poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_server, pg_admin) -> Iterator[str]:
    """A new, empty database on the test server, as a plain ``postgresql://`` URL."""
    from sqlalchemy.engine import make_url

    name = f"eqc_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_server).set(drivername="postgresql", database=name) \
            .render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    """An empty database on each backend: sqlite:///TMP/results.db, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("pg_url")
