"""A PostgreSQL and a MariaDB of a test's own: initialised into a temporary directory with the
machine's programs, on a free port, to be stopped, restarted or killed at will. Never the shared
servers.

PostgreSQL's programs are found in ``FLOWCRAFT_TEST_PG_BIN`` (default
``/usr/lib/postgresql/15/bin``), MariaDB's on ``PATH`` (``mariadbd``, ``mariadb-install-db``).
Both refuse to run as root, so as root they run as the ``postgres`` / ``mysql`` users.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("FLOWCRAFT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as(user: str, *args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *args]
    return list(args)


def _own_dir(prefix: str, user: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, user, user)
    return root


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory (``trust`` authentication)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "postgres.log"

    @classmethod
    def missing(cls) -> str | None:
        """Why a private PostgreSQL cannot be started here (None if it can)."""
        if not (PG_BIN / "initdb").exists():
            return (
                f"a private PostgreSQL needs its programs in {PG_BIN} "
                "(apt-get install postgresql-15, or set FLOWCRAFT_TEST_PG_BIN)"
            )
        return None

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb into a new temporary directory (not started yet)."""
        server = cls(_own_dir("flowcraft-pg-", "postgres"), free_port())
        subprocess.run(
            _as(
                "postgres",
                str(PG_BIN / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "-A",
                "trust",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        return server

    def ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            _as(
                "postgres",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                *args,
            ),
            check=check,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self.ctl("-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown (sessions ended, checkpoint); ``immediate``: every
        process quits at once without a checkpoint, and the next start recovers from the WAL,
        as after a crash."""
        self.ctl("-w", "-m", mode, "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def terminate_sessions(self) -> None:
        """End every client session (``pg_terminate_backend``): PostgreSQL's CLIENT KILL."""
        subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atc",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        self.ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateMariaDB:
    """A MariaDB server in a temporary directory, without grant tables (no authentication:
    it listens on 127.0.0.1 only and lives as long as the test)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.log = root / "mariadb.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def missing(cls) -> str | None:
        if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
            return (
                "a private MariaDB needs mariadbd and mariadb-install-db "
                "(apt-get install mariadb-server)"
            )
        return None

    @classmethod
    def create(cls) -> PrivateMariaDB:
        server = cls(_own_dir("flowcraft-mariadb-", "mysql"), free_port())
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={server.data}",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        return server

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                shutil.which("mariadbd") or "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.root}/mariadb.sock",
                f"--pid-file={self.root}/mariadb.pid",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=mysql",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=1",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 60
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mariadbd on port {self.port} did not start: see {self.log}")
            time.sleep(0.05)
        subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-e",
                "CREATE DATABASE IF NOT EXISTS chaos",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def kill(self) -> None:
        """SIGKILL: InnoDB recovers from its redo log at the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/chaos"

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
