"""What ops keep that is not a ping: rejected payloads and the companion ``/usage_ping_*`` reports.

Nothing a sender or a loader hands in vanishes: what cannot be stored as a ping is kept here
(at most ``RAW_KEEP_LIMIT`` bytes of it, compressed) with the reason it was refused. Text and
JSON are made storable first: PostgreSQL refuses NUL characters, and its jsonb non-finite
numbers, which a broken sender may still send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from instances.models import PingReport, RejectedPayload
from instances.services.storable import clip, compress_raw
from instances.transport import clean_text

RAW_KEEP_LIMIT = 2 * 1024 * 1024  # bytes of a rejected payload worth keeping for ops
REPORT_MAX_DEPTH = 32  # GitLab's reports nest three or four levels; deeper is noise


def rejected_payload_keep(*, source: str, reason: str, raw: bytes | None, filename: str = ""):
    """Keep what could not be stored as a ping, so ops can see it and nothing vanishes.

    At most ``RAW_KEEP_LIMIT`` bytes of it are kept (compressed).
    """
    blob = compress_raw(raw[:RAW_KEEP_LIMIT]) if raw else None
    return RejectedPayload.objects.create(
        source=source,
        filename=_storable_text(filename)[:255],
        reason=_storable_text(reason),
        raw=blob,
    )


def rejected_payloads_keep(*, source: str, rejections: Sequence[tuple[str, str, bytes | None]]):
    """``rejected_payload_keep`` for many (filename, reason, raw) at once, in one insert."""
    RejectedPayload.objects.bulk_create(
        [
            RejectedPayload(
                source=source,
                filename=_storable_text(filename)[:255],
                reason=_storable_text(reason),
                raw=compress_raw(raw[:RAW_KEEP_LIMIT]) if raw else None,
            )
            for filename, reason, raw in rejections
        ],
        batch_size=100,
    )


def ping_report_store(*, kind: str, parsed, payload: dict) -> PingReport:
    """Store a ``/usage_ping_errors`` or ``/usage_ping_metadata`` report for ops.

    The payload is kept as JSON made storable: PostgreSQL's jsonb refuses NUL characters and
    non-finite numbers, which a broken sender may still send.
    """
    payload = _storable_json(payload)
    if kind == PingReport.Kind.ERROR:
        return PingReport.objects.create(
            kind=kind,
            uuid=clip(parsed.uuid, 64),
            hostname=clip(parsed.hostname, 255),
            version=clip(parsed.version, 64),
            message=parsed.message,
            elapsed=parsed.elapsed,
            payload=payload,
        )
    return PingReport.objects.create(
        kind=kind,
        uuid=clip(parsed.uuid, 64),
        message=f"{len(parsed.metrics)} metric timings",
        payload=payload,
    )


def _storable_text(value: str) -> str:
    return clean_text(value)


def _storable_json(value, depth: int = 0):
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return None  # past what any database's JSON number holds
    if isinstance(value, dict | list) and depth >= REPORT_MAX_DEPTH:
        return "… (nested too deeply, cut)"
    if isinstance(value, dict):
        return {_storable_text(str(k)): _storable_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable_json(v, depth + 1) for v in value]
    return value
