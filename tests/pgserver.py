"""A real, throw-away PostgreSQL server for the tests.

`postgres_url` (session-scoped) yields the URL of a PostgreSQL database the tests may fill:

- `DIPEO_TEST_POSTGRES_URL` when it is set (a server someone else runs: CI, a developer's own);
- otherwise a server started here from the PostgreSQL programs on this machine (`pg_config
  --bindir`, PATH, or Debian's /usr/lib/postgresql/*/bin): `initdb` into a temporary data
  directory, `postgres` listening on 127.0.0.1 on a free port (its unix socket in that
  directory too), stopped and removed at the end of the session. PostgreSQL refuses to run as
  root, so as root the server runs as a system user (`dipeo-pg`, created when missing).

The URL carries a password, so that tests see it masked wherever dipeo could print it. Tests
that need the server are skipped, with the reason, only when no server program is found.
`fresh_database(url)` makes an empty database per test (CREATE DATABASE ... TEMPLATE template0
is fast: a few ms).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

URL_ENV = "DIPEO_TEST_POSTGRES_URL"
USER = "dipeo"
PASSWORD = "s3cret-pg-pass"
SERVICE_USER = "dipeo-pg"


def find_bindir() -> Path | None:
    """The folder holding initdb and postgres, or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> str | None:
    """The user to run the server as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    if subprocess.run(["id", "-u", SERVICE_USER], capture_output=True).returncode != 0:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            capture_output=True,
        )  # fmt: skip
        if made.returncode != 0:
            return "nobody"
    return SERVICE_USER


class PostgresServer:
    """One postgres process on a temporary data directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="dipeo-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = _service_user()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/dipeo_test"

    def _as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def start(self) -> None:
        os.chmod(self.root, 0o755)
        if self.user:
            shutil.chown(self.root, self.user)
        password_file = self.root / "pwfile"
        password_file.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(password_file, self.user)
        subprocess.run(
            self._as_user(
                [str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                 "--pwfile", str(password_file), "--auth=scram-sha-256", "--encoding=UTF8",
                 "--locale=C", "--no-sync"]
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 (kept open for the server)
        self.process = subprocess.Popen(
            self._as_user(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.root), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"]
            ),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "postgres exited: " + (self.root / "server.log").read_text()[-2000:]
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        create_database(self.url.rsplit("/", 1)[0] + "/postgres", "dipeo_test")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: postgres's "smart" shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE `name` through the server at `admin_url` (a database that exists)."""
    import asyncio

    import asyncpg

    async def create() -> None:
        for attempt in range(50):
            try:
                conn = await asyncpg.connect(admin_url)
                break
            except (OSError, asyncpg.CannotConnectNowError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        finally:
            await conn.close()

    asyncio.run(create())


def fresh_database(url: str) -> str:
    """A new empty database on the server of `url`; returns its URL."""
    name = "t_" + uuid.uuid4().hex[:16]
    parts = urlsplit(url)
    create_database(urlunsplit(parts._replace(path="/postgres")), name)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database for this test session (see the module docstring)."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL server program found (pg_config --bindir, PATH, "
            f"/usr/lib/postgresql/*/bin): install PostgreSQL or set {URL_ENV}"
        )
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """The URL of an empty database of its own for one test."""
    return fresh_database(postgres_url)
