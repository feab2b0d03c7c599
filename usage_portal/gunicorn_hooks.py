"""gunicorn's server hooks (the Procfile passes ``--config python:usage_portal.gunicorn_hooks``).

Prometheus' multiprocess mode keeps each gunicorn worker's counts in files under
``PROMETHEUS_MULTIPROC_DIR`` so one scrape adds them up (usage_portal.web.ops). Its rules: the
folder starts empty for each server run (files left by the last run would be added again), and
a worker that exits is marked dead so its live gauges stop counting; its counters' files stay,
so totals never go backwards when ``--max-requests`` replaces a worker.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import multiprocess


def _folder(server) -> Path | None:
    name = server.cfg.env.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "PROMETHEUS_MULTIPROC_DIR"
    )
    return Path(name) if name else None


def on_starting(server) -> None:
    folder = _folder(server)
    if folder is None:
        return
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_file() and entry.suffix == ".db":  # only prometheus_client's own files
                entry.unlink()
    else:
        folder.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    folder = _folder(server)
    if folder is None:
        return
    multiprocess.mark_process_dead(worker.pid, str(folder))
