"""Pings from files: the bulk loader of payload files, the upload page, the SaaS export import.

The bulk loader reads, parses and compresses in worker processes while the previous batch is
stored; every file or row that cannot be stored is kept as a rejected payload with its reason.
The loaders queue no refresh per batch: their callers announce ``summary.company_ids`` once
(``ping_uploads_store`` does so itself).
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.conf import settings
from django.core.files import File
from django.db import DataError, transaction
from django.utils import timezone

from accounts.changes import companies_changed
from accounts.models import Company
from accounts.permissions import can_upload_pings_for
from instances.models import PingSource
from instances.parsing import PingRejected, parse_ping, read_payload_file_or_reason
from instances.saas import parse_saas_row, read_rows
from instances.services.inputs import PingInput
from instances.services.rejections import (
    RAW_KEEP_LIMIT,
    rejected_payload_keep,
    rejected_payloads_keep,
)
from instances.services.storable import RAW_COMPRESSION_LEVEL
from instances.services.store import pings_store
from instances.transport import PayloadError, inflate_body, loads_json

PING_FILE_SUFFIXES = (".json", ".json.gz")


@dataclass(slots=True)
class BulkSummary:
    """What a bulk load did: ``items`` read (files, or rows of an export), what became of them;
    ``rejected`` holds (path or row location, reason) for each one not stored."""

    items: int = 0
    accepted: int = 0
    duplicates: int = 0
    unmapped: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    company_ids: set[int] = field(default_factory=set)


def ping_files_find(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(files to load, (path, reason) for paths that are neither a file nor a folder).

    A folder is searched recursively for ``*.json`` and ``*.json.gz`` (any case); a file named
    explicitly is loaded whatever its name. Files are returned once each, in path order per
    argument, so repeated runs load in the same order. Symbolic links are never followed: one
    in a folder of exports could otherwise store (as a rejected payload) a file such as
    ``/etc/passwd``; each is listed with its reason instead.
    """
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for arg in paths:
        path = Path(arg)
        if path.is_symlink():
            missing.append((str(arg), "a symbolic link, not followed"))
            continue
        if path.is_dir():
            found = []
            for p in sorted(path.rglob("*")):  # rglob does not descend into linked folders
                if not p.name.lower().endswith(PING_FILE_SUFFIXES):
                    continue
                if p.is_symlink():
                    missing.append((str(p), "a symbolic link, not followed"))
                elif p.is_file():
                    found.append(p)
        elif path.is_file():
            found = [path]
        else:
            missing.append((str(arg), "no such file or folder"))
            continue
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files, missing


#: Below this many files, starting worker processes costs more than it saves.
PROCESS_POOL_FROM = 100


def ping_files_ingest(
    *,
    files: Sequence[Path],
    batch_size: int = 500,
    workers: int = 2,
    max_bytes: int | None = None,
    on_progress=None,
) -> BulkSummary:
    """Store payload files in batches: ``pings_store`` per batch, rejections kept per batch.

    Reading, parsing and compressing run in ``workers`` processes (threads for a handful of
    files), overlapping with storing: JSON parsing holds the GIL, so threads alone would leave
    a core idle. Streams: at most two batches are in memory, one being stored while the workers
    read the next. Nothing is refreshed per batch; the caller queues one refresh with
    ``companies_changed(summary.company_ids)``. A batch the database refuses
    (a value out of range) is retried file by file so only the guilty file is rejected.
    ``on_progress(n)`` is called after each batch with the number of files it held.
    """
    read = functools.partial(
        read_payload_file_or_reason,
        max_bytes=max_bytes or settings.PING_MAX_DECOMPRESSED_BYTES,
        compress_level=RAW_COMPRESSION_LEVEL,
        now=timezone.now(),
    )
    summary = BulkSummary(items=len(files))
    paths = [str(p) for p in files]
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    if not batches:
        return summary
    workers = max(1, workers)
    if len(files) >= PROCESS_POOL_FROM and workers > 1:
        # spawn, not fork: the parent holds database connections and threads (tqdm's monitor).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        chunk = max(1, min(32, batch_size // (4 * workers)))
    else:
        pool, chunk = ThreadPoolExecutor(workers), 1
    with pool:
        pending = pool.map(read, batches[0], chunksize=chunk)
        for index, batch in enumerate(batches):
            results = list(pending)
            if index + 1 < len(batches):
                pending = pool.map(read, batches[index + 1], chunksize=chunk)
            attempts = [
                (path, PingInput.from_parsed(parsed, raw_compressed=blob, label=path), None)
                if parsed is not None
                else (path, None, reason)
                for path, (parsed, blob, reason) in zip(batch, results, strict=True)
            ]
            _bulk_store(attempts, summary)
            if on_progress is not None:
                on_progress(len(attempts))
    return summary


def _bulk_store(attempts, summary: BulkSummary) -> None:
    inputs = [item for _, item, _ in attempts if item is not None]
    rejections = [(str(path), reason) for path, item, reason in attempts if item is None]
    try:
        stored = [pings_store(inputs=inputs, source=PingSource.BULK, refresh=False)]
    except DataError:
        stored = []
        for item in inputs:
            try:
                stored.append(pings_store(inputs=[item], source=PingSource.BULK, refresh=False))
            except DataError:
                rejections.append((item.label, "a value does not fit the database"))
    for result in stored:
        summary.accepted += result.accepted
        summary.duplicates += result.duplicates
        summary.unmapped += result.unmapped
        summary.company_ids |= result.company_ids
    if rejections:
        summary.rejected.extend(rejections)
        rejected_payloads_keep(
            source=PingSource.BULK,
            rejections=[(path[-255:], reason, _head(path)) for path, reason in rejections],
        )


def _head(path: str) -> bytes | None:
    """The start of a rejected file, for ops; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(RAW_KEEP_LIMIT)
    except OSError:
        return None


def saas_export_ingest(*, data: bytes, filename: str, batch_size: int = 500) -> BulkSummary:
    """Store a weekly SaaS namespace export (CSV, JSON array or JSON Lines).

    Good rows are stored as namespace pings (namespaces are Production on arrival; the same
    namespace and snapshot date is stored once), each bad row is kept as a rejected payload and
    listed in ``rejected`` as ("line N" / "item N", reason). Raises ``PingRejected`` when the
    file as a whole cannot be read. No refresh is queued: the caller queues one for
    ``summary.company_ids``.
    """
    summary = BulkSummary()
    batch: list[PingInput] = []
    rejections: list[tuple[str, str, bytes | None]] = []
    now = timezone.now()

    def flush() -> None:
        result = pings_store(inputs=batch, source=PingSource.SAAS, refresh=False)
        summary.accepted += result.accepted
        summary.duplicates += result.duplicates
        summary.unmapped += result.unmapped
        summary.company_ids |= result.company_ids
        batch.clear()

    for number, (location, row) in enumerate(read_rows(data, filename=filename), start=1):
        summary.items += 1
        try:
            parsed = parse_saas_row(row, line=number, now=now)
            batch.append(PingInput.from_saas(parsed, label=location))
        except PingRejected as exc:
            summary.rejected.append((location, exc.reason))
            # A CSV row with more cells than the header keeps the extras under the key None.
            raw = (
                orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS)
                if row is not None
                else None
            )
            rejections.append((filename[-255:], f"{location}: {exc.reason}", raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if rejections:
        rejected_payloads_keep(source=PingSource.SAAS, rejections=rejections)
    return summary


# --------------------------------------------------------------------------------------------------
# The upload page: a few payload files downloaded from air-gapped instances


@dataclass
class UploadResult:
    filename: str
    ok: bool
    message: str
    ping_id: int | None = None
    #: What happened: "stored", "duplicate", "unmapped" (stored, license not mapped yet) or
    #: "rejected" (kept as a rejected payload).
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "stored" if self.ok else "rejected"


def ping_uploads_store(*, uploads: Iterable[File], by=None) -> list[UploadResult]:
    """Store each uploaded file on its own; a bad file is reported and kept, the others go on.

    Given ``by`` (the person uploading), a ping that would change an account they may not
    change (``accounts.permissions.can_upload_pings_for``) is not stored: it is kept as a
    rejected payload, shown under Data quality, with the reason. A ping for an instance no
    account holds yet is stored as usual (unmapped). One score refresh is queued for every
    company the stored files touched.
    """
    results, company_ids = [], set()
    for upload in uploads:
        result, companies = _upload_store(upload, by)
        results.append(result)
        company_ids |= companies
    companies_changed(company_ids, reason="uploaded pings")
    return results


class _NotYours(Exception):
    def __init__(self, company: Company) -> None:
        self.company = company


def _upload_store(upload: File, by=None) -> tuple[UploadResult, set[int]]:
    name = upload.name
    limit = settings.PING_MAX_BODY_BYTES
    if upload.size > limit:
        reason = f"file of {upload.size} bytes exceeds the limit of {limit} bytes"
        rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=None, filename=name)
        return UploadResult(name, False, f"rejected: {reason}"), set()
    data = upload.read()
    try:
        text = inflate_body(
            data, content_encoding=None, max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES
        )
        parsed = parse_ping(loads_json(text), now=timezone.now())
        raw = bytes(text)
        with transaction.atomic():
            summary = pings_store(
                inputs=[PingInput.from_parsed(parsed, raw=raw, label=name)],
                source=PingSource.UPLOAD,
                refresh=False,
            )
            _check_uploader(by, summary.company_ids)
    except (PayloadError, PingRejected) as exc:
        return _upload_rejected(name, exc.reason, data), set()
    except _NotYours as refused:
        reason = (
            f"the ping is for {refused.company.name}, an account you cannot change: "
            "its CSM or Ops can upload it"
        )
        return _upload_rejected(name, reason, data), set()
    except DataError:
        return _upload_rejected(name, "a value does not fit the database", data), set()
    outcome = summary.outcomes[0]
    if outcome.status == "duplicate":
        result = UploadResult(
            name, True, "already stored (duplicate)", outcome.ping_id, status="duplicate"
        )
        return result, set()
    # In the uploader's zone: the upload page activates it (UTC anywhere else).
    when = f"{timezone.localtime(parsed.recorded_at):%Y-%m-%d %H:%M %Z}"
    detail = f"stored: {parsed.hostname or parsed.uuid}, version {parsed.version or '?'}, {when}"
    if outcome.unmapped:
        detail += " — license maps to no subscription yet (kept, shown under Data quality)"
    status = "unmapped" if outcome.unmapped else "stored"
    return UploadResult(name, True, detail, outcome.ping_id, status), summary.company_ids


def _check_uploader(by, company_ids: set[int]) -> None:
    """Raise `_NotYours` (rolling the store back) when ``by`` may not change one of them."""
    if by is None or not company_ids:
        return
    for company in Company.objects.filter(pk__in=company_ids).only("pk", "name", "csm_id"):
        if not can_upload_pings_for(by, company):
            raise _NotYours(company)


def _upload_rejected(name: str, reason: str, data: bytes) -> UploadResult:
    rejected_payload_keep(source=PingSource.UPLOAD, reason=reason, raw=data, filename=name)
    return UploadResult(name, False, f"rejected: {reason}")
