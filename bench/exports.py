"""Downloads of every row, through gunicorn: time to the first byte, to the whole file, the web
process's peak memory, and whether the file is safe to open in a spreadsheet.

Each download is one GET as ops (every account) on the Procfile's gunicorn, read as it streams.
Before each, every gunicorn process's peak RSS is reset (``/proc/<pid>/clear_refs``), so the
peak read after is that download's own. The file is then read back: its rows counted (the
header and one per account), and every cell checked against the one formula rule
(``scoring.spreadsheet.safe_cell``): a cell it would still change is a formula left in.
"""

from __future__ import annotations

import csv
import io
import time

from . import procs
from .report import Figure, Results
from .targets import target

DOWNLOADS = (
    ("dashboard CSV, every account", "/?csm=&_export=csv", "dashboard"),
    ("dashboard XLSX, every account", "/?csm=&_export=xlsx", "dashboard"),
    ("versions report CSV, every instance", "/reports/versions/?csm=&_export=csv", "versions"),
    ("versions report XLSX, every instance", "/reports/versions/?csm=&_export=xlsx", "versions"),
)


def _session_cookie(username: str) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def _unsafe_csv(body: bytes) -> tuple[int, int]:
    """(rows, cells a spreadsheet would run as a formula)."""
    from scoring.spreadsheet import safe_cell

    rows = unsafe = 0
    for row in csv.reader(io.StringIO(body.decode("utf-8-sig"))):
        rows += 1
        unsafe += sum(1 for cell in row if safe_cell(cell) != cell)
    return rows, unsafe


def _unsafe_xlsx(body: bytes) -> tuple[int, int]:
    from openpyxl import load_workbook

    from scoring.spreadsheet import safe_cell

    book = load_workbook(io.BytesIO(body), read_only=True)
    rows = unsafe = 0
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            rows += 1
            for cell in row:
                value = cell.value
                if cell.data_type == "f" or (isinstance(value, str) and safe_cell(value) != value):
                    unsafe += 1
    book.close()
    return rows, unsafe


def _expected_rows(kind: str) -> int:
    from accounts.models import Company
    from usage_portal.web.reports.selectors import self_managed_versions

    if kind == "dashboard":
        return Company.objects.count()
    return self_managed_versions().count()


def measure(results: Results, *, web, log) -> None:
    import requests

    area = "exports"
    wanted = {
        "first byte": ("s", target("export.first byte")),
        "whole file": ("s", target("export.whole file")),
        "peak RSS of the web process": ("MB", target("export.peak RSS")),
        "formula cells": ("cells", target("export.formula cells")),
    }
    cookies = _session_cookie("ops")
    session = requests.Session()
    for subject, url, kind in DOWNLOADS:
        workers = [pid for pid in web.tree() if pid != web.proc.pid]
        procs.reset_peaks(workers)
        t0 = time.perf_counter()
        first = None
        chunks = []
        try:
            with session.get(web.url + url, cookies=cookies, stream=True, timeout=120) as response:
                status = response.status_code
                for chunk in response.iter_content(chunk_size=65536):
                    if first is None:
                        first = time.perf_counter() - t0
                    chunks.append(chunk)
        except requests.RequestException as exc:
            why = f"{type(exc).__name__}: {exc}"[:120]
            log(f"{subject}: {why}")
            results.missing(area, subject, wanted, why)
            continue
        whole = time.perf_counter() - t0
        if status != 200 or first is None:
            log(f"{subject}: HTTP {status}")
            results.missing(area, subject, wanted, f"HTTP {status}")
            continue
        peak = max((mem["hwm_mb"] for pid, mem in web.tree().items() if pid in workers), default=0)
        body = b"".join(chunks)
        rows, unsafe = (_unsafe_xlsx if "XLSX" in subject else _unsafe_csv)(body)
        results.measured(
            area,
            subject,
            wanted,
            {
                "first byte": first,
                "whole file": whole,
                "peak RSS of the web process": peak,
                "formula cells": unsafe,
            },
        )
        expected = _expected_rows(kind) + 1  # and the header
        results.add(area, subject, "rows", Figure(rows, "rows", f">= {expected}"))
        results.add(area, subject, "size", Figure(len(body) / 2**20, "MB"))
        log(
            f"{subject:<40} first byte {first:5.2f}s  whole {whole:5.1f}s  "
            f"{len(body) / 2**20:6.1f} MB  {rows:,} rows  web peak {peak:.0f} MB  "
            f"{unsafe} formula cells"
        )
