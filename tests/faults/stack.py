"""The fault suite's own production-shaped stack: PostgreSQL and Redis on their own ports, and
the Procfile's web, worker and beat processes on them.

Nothing here touches the machine's shared services: the database cluster is created with
``initdb`` in a temporary folder and started with ``pg_ctl`` on a free port (as the ``postgres``
system user when the suite runs as root: PostgreSQL refuses to run as root), and Redis is a
``redis-server`` of its own. Faults are injected by stopping, restarting, pausing or killing
these processes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from tests import redis_support
from tests.redis_support import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not listen on port {port} within {timeout:.0f} s")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(f"{name} not found: apt-get install postgresql")
    return found


class OwnPostgres:
    """A PostgreSQL cluster of the suite's own, on a free port, with fsync off (speed only)."""

    def __init__(self, folder: Path):
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            # pytest's temporary folders are private to root; the server runs as postgres.
            folder = Path(tempfile.mkdtemp(prefix="usage-portal-faults-pg-"))
            folder.chmod(0o755)
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.log = folder / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/portal"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)}:\n{result.stdout}{result.stderr}")
        return result

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        self.start()
        self._run(
            _pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "portal"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        wait_port(self.port, 30, "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop (every connection is cut, as in a failover), stay down, start again."""
        self.stop("fast")
        time.sleep(down_for)
        self.start()


class OwnRedis(redis_support.OwnRedis):
    """The shared test helper's own Redis, which the faults also restart and pause."""

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        super().start()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def pause(self) -> None:
        """A hung Redis: connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def procfile() -> dict[str, str]:
    """The Procfile's process types and command lines, as honcho would start them."""
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


class Stack:
    """The database, the broker/cache and the Procfile's processes, wired as in production."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.postgres = OwnPostgres(folder / "pg")
        self.redis = OwnRedis(folder / "redis")
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "DJANGO_SETTINGS_MODULE": "usage_portal.settings",
            "PYTHONPATH": str(ROOT),
            "SECRET_KEY": "fault-suite-" + "k3Jq9" * 10,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_COOKIES": "0",
            "STATIC_MANIFEST": "0",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "VAR_DIR": str(folder / "var"),
            "PORT": str(self.port),
            "BIND": "127.0.0.1",
            "WEB_CONCURRENCY": "2",
            "WORKER_CONCURRENCY": "2",
            # Fast sweeps, so recovery is seen in seconds rather than the production minutes.
            "LABEL_SWEEP_SECONDS": "2",
            "REFRESH_SWEEP_SECONDS": "2",
            "REFRESH_SWEEP_MIN_AGE_SECONDS": "3",
            "LABEL_REFRESH_DELAY_HOURS": "0.002",  # 7.2 s: label edits wait for the beat sweep
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_services(self) -> None:
        self.postgres.init()
        self.redis.start()
        self.env |= {"DATABASE_URL": self.postgres.url, "REDIS_URL": self.redis.url}
        (self.folder / "var").mkdir(exist_ok=True)
        self.manage("migrate", "--noinput")

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stderr[-3000:]}"
        return result.stdout

    def world(self, *args: str) -> dict:
        """Run ``tests.faults.world`` against this stack's database and return its JSON."""
        result = subprocess.run(
            [sys.executable, "-m", "tests.faults.world", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return orjson.loads(result.stdout)

    def start(self, name: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            ["bash", "-c", "exec " + procfile()[name]],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if name == "web":
            wait_port(self.port, 60, "gunicorn")
        elif name == "worker":
            self._wait_log("worker", "ready.", 60)

    def _wait_log(self, name: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        path = self.folder / f"{name}.log"
        while time.monotonic() < deadline:
            if text in path.read_text(errors="replace"):
                return
            assert self.procs[name].poll() is None, self.log_tail(name)
            time.sleep(0.2)
        pytest.fail(f"{name} did not report {text!r}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process type's whole group, as the OOM killer or a crash would."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.redis.stop()
        self.postgres.remove()
