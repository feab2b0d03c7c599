"""Child processes for the benchmark: one-shot commands with their own peak RSS, and services.

Peak RSS of a one-shot command comes from ``os.wait4`` (the kernel's ``ru_maxrss`` of that one
child, not of every child so far), taken by ``bench/peak.py``, a small process that starts the
command so that the figure is not the bench's own size (see there); a long-running service's
from ``/proc/<pid>/status``
(``VmHWM``) of each process in its tree. Services run in their own session, so stopping one
signals its process group and nothing else. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = [PYTHON, str(ROOT / "manage.py")]
#: The line ``recompute_scores`` ends with (in one process or fanned out): companies, seconds.
RECOMPUTED = re.compile(r"Recomputed (\d+) companies .* in ([\d.]+)s")


@dataclass
class Done:
    returncode: int
    output: str
    seconds: float
    max_rss_mb: float
    timed_out: bool = False
    cpu_seconds: float = 0.0  # user + system time of the child (and its waited-for children)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run(
    cmd: list[str], *, env: dict, timeout: float, echo: bool = False, prefix: str = "    | "
) -> Done:
    """Run ``cmd`` to completion; its output, wall time and own peak RSS (MB)."""
    started = time.perf_counter()
    fd, figures = tempfile.mkstemp(prefix="bench-peak-", suffix=".json")
    os.close(fd)
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "peak.py"), figures, *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(prefix + line.rstrip(), flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _signal_group(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    try:
        own = json.loads(Path(figures).read_text() or "{}")
    except (OSError, ValueError):
        own = {}  # killed at the timeout: the wrapper's own figures, which include the command's
    finally:
        Path(figures).unlink(missing_ok=True)
    return Done(
        returncode=proc.returncode,
        output="".join(lines),
        seconds=time.perf_counter() - started,
        max_rss_mb=own.get("max_rss_kb", usage.ru_maxrss) / 1024,
        timed_out=timed_out.is_set(),
        cpu_seconds=own.get("cpu_seconds", usage.ru_utime + usage.ru_stime),
    )


def manage(args: list[str], *, env: dict, timeout: float, echo: bool = False) -> Done:
    return run([*MANAGE, *args], env=env, timeout=timeout, echo=echo)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the child leads its own session and group


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A long-running child (gunicorn, a Celery worker) with its log in a file."""

    def __init__(self, name: str, cmd: list[str], *, env: dict, log: Path) -> None:
        self.name, self.cmd, self.env, self.log = name, cmd, env, log
        self.proc: subprocess.Popen | None = None

    def start(self, *, ready: str, timeout: float = 60) -> None:
        """Start and wait until ``ready`` appears in the log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User + system time of every live process of this service so far."""
        return sum(mem["cpu_s"] for mem in self.tree().values())

    def tree(self) -> dict[int, dict[str, float]]:
        """RSS and peak RSS (MB) of every live process of this service, by pid."""
        if self.proc is None:
            return {}
        return tree_memory(self.proc.pid)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_memory(root: int) -> dict[int, dict[str, float]]:
    kids = _children()
    out: dict[int, dict[str, float]] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(kids.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out[pid] = {
            "rss_mb": _kb(fields.get("VmRSS")) / 1024,
            "hwm_mb": _kb(fields.get("VmHWM")) / 1024,
            "cpu_s": _cpu_seconds(pid),
        }
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``, plus those of its children that ended (gunicorn's workers
    restart after --max-requests: the ones gone still count, once, in their parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(fields[n]) for n in (11, 12, 13, 14)) / _TICKS


def reset_peaks(pids) -> None:
    """Start each process's peak RSS (``VmHWM``) afresh from its current RSS (Linux)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def _kb(value: str | None) -> float:
    return float(value.split()[0]) if value else 0.0
