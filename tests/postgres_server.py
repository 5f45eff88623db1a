"""A real PostgreSQL server for the tests: one per session, on a free loopback port in a temporary folder.

``shared()`` starts it at first use (initdb, then postgres with its unix socket in the same folder);
``tests/conftest.py`` stops it when the session ends. ``new_database()`` makes an empty database for
one test. The binaries are Debian's, under /usr/lib/postgresql/*/bin (``make test`` installs them);
without them, tests that need the server are skipped, saying why. As root, the server runs as the
``postgres`` user (initdb refuses root). Connections authenticate with a password, so every test
also checks that the URL keeps it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.servers import SessionServer, end_process, free_port

__all__ = ["PASSWORD", "PostgresServer", "bin_folder", "shared", "stop_shared"]

PASSWORD = "s3cret:@/ pw"
"""The superuser's password: characters a URL must escape, to check that URLs round-trip."""

_counter = itertools.count(1)


def bin_folder() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest, else the one on PATH; None when there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[-3].split(".")[0])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A postgres process listening on 127.0.0.1:``port`` only: tuned for tests (no fsync), or with
    PostgreSQL's ``durable`` defaults (fsync, synchronous commit) for benchmarks."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        folder = bin_folder()
        if folder is None:
            pytest.skip(
                "no PostgreSQL server binaries: `make test` installs them (apt-get install postgresql)"
            )
        self.bin = folder
        self.folder = Path(tempfile.mkdtemp(prefix="proctor-postgres-"))
        self.port = free_port()
        self._user: int | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres").pw_uid
            except KeyError:
                self._user = pwd.getpwnam("nobody").pw_uid
            os.chown(self.folder, self._user, -1)
        self.process: subprocess.Popen[bytes] | None = None
        self._template = ""
        try:
            self._initdb()
            self.start()
        except BaseException:
            self.close()
            raise

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://proctor:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            command,
            user=self._user,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.folder,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def _initdb(self) -> None:
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._user is not None:
            os.chown(password_file, self._user, -1)
        self._run(
            str(self.bin / "initdb"),
            "--pgdata",
            str(self.folder / "data"),
            "--username",
            "proctor",
            "--pwfile",
            str(password_file),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.folder),
            "max_connections": "200",
            "shared_buffers": "32MB" if not self.durable else "128MB",
            "log_min_messages": "warning",
        }
        if not self.durable:
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        with (self.folder / "postgres.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.folder / "data")]
                + [word for name, value in options.items() for word in ("-c", f"{name}={value}")],
                user=self._user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=self.folder,
            )
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "postgres.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"postgres did not start on port {self.port}:\n{log}")
            time.sleep(0.05)

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def new_database(self, *, empty: bool = False) -> str:
        """The URL of a new database of this server: with proctor's schema, or ``empty``.

        The schema is copied from a template migrated once, which is faster than migrating each.
        """
        import psycopg

        from proctor.db import PostgresDatabase

        if not empty and not self._template:
            template = self.new_database(empty=True)
            database = PostgresDatabase(template)
            database.prepare()
            database.close()
            self._template = template.rpartition("/")[2]
        name = f"test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            template = "template0" if empty else self._template
            connection.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY file_copy")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and wait for it to exit."""
        process, self.process = self.process, None
        end_process(process, 10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


_session: SessionServer[PostgresServer] = SessionServer(PostgresServer)
shared = _session.get
"""The session's server, started at first use."""
stop_shared = _session.stop
