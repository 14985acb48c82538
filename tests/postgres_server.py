"""A throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temporary folder.

``PostgresServer.start()`` runs ``initdb`` (password authentication, scram-sha-256) in a fresh
temporary folder and ``pg_ctl start`` on a loopback port chosen at run time; ``stop()`` stops it
and deletes the folder. ``initdb`` refuses to run as root, so as root the cluster belongs to the
``postgres`` user (Debian's package creates it) or, failing that, ``nobody``, and the server
commands run through ``runuser``. ``.ci/run`` installs the package
(``scripts/install_postgresql.sh``); without it :func:`postgres_bindir` returns None and the
tests skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "fedtab_test"


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when absent."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The user the cluster runs as when this process is root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")


class PostgresServer:
    """One PostgreSQL cluster with superuser ``fedtab_test`` and a random password."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _run_as()
        self.password = "pw-" + os.urandom(12).hex()
        self.folder = Path(tempfile.mkdtemp(prefix="fedtab-pg-"))
        self.data_dir = self.folder / "data"
        self.port = 0

    @property
    def url(self) -> str:
        """A SQLAlchemy URL of the ``postgres`` database, password included."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def url_without_password(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        full = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            full = ["runuser", "-u", self.user, "--", *full]
        return subprocess.run(full, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "LC_ALL": "C.UTF-8"})

    def start(self) -> PostgresServer:
        """initdb and start the server; raises RuntimeError with the server's output."""
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.folder, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        init = self._cmd(["initdb", "-D", str(self.data_dir), "-U", SUPERUSER,
                          "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                          "--no-sync"])
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        pwfile.unlink()
        for _attempt in range(5):
            self.port = _free_port()
            options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off"
            started = self._cmd(["pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60",
                                 "-o", options, "-l", str(self.folder / "server.log"), "start"])
            if started.returncode == 0:
                return self
            time.sleep(0.2)  # the port was taken between choosing and binding it: retry
        log = self.folder / "server.log"
        raise RuntimeError(f"pg_ctl start failed: {started.stderr}"
                           f"{log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster's folder."""
        if self.data_dir.exists():
            self._cmd(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)
