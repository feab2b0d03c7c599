"""Pure reading of the weekly SaaS namespace export (CSV or JSON rows)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import orjson

from .metrics import METRIC_NAMES, SEAT_METRICS
from .parsing import PingRejected, check_recorded_at
from .transport import clean_text, clean_value

REQUIRED_COLUMNS = ("namespace_id", "namespace_path", "subscription_name", "snapshot_date")
#: Export column → metric; every other metric name is read from the column of the same name.
SEAT_COLUMNS = {"seats": "licensed_users", "seats_in_use": "billable_users"}
USAGE_COLUMNS = tuple(name for name in METRIC_NAMES if name not in SEAT_METRICS)


@dataclass(frozen=True, slots=True)
class SaasRow:
    namespace_id: int
    namespace_path: str
    subscription_name: str
    recorded_at: datetime
    metrics: dict[str, int | None]
    line: int


def read_rows(data: bytes, *, filename: str) -> Iterator[tuple[str, dict]]:
    """(location, row) for each row of an export, location naming it for a person.

    CSV with a header row ("line N", the physical line where the row ends), a JSON array of
    objects ("item N") or JSON Lines, one object per line ("line N"). UTF-8 with or without BOM;
    column names are matched without regard to case or surrounding spaces. Raises PingRejected
    for a file that cannot be read at all (not UTF-8, broken JSON array, missing CSV columns);
    a JSON Lines line that is not JSON is yielded as None so it is reported on its own.
    """
    try:
        text = clean_text(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise PingRejected(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise PingRejected(f"not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise PingRejected("a JSON export must be an array of objects")
        for index, row in enumerate(rows, start=1):
            yield f"item {index}", _normalised(clean_value(row))
        return
    if stripped.startswith("{") or filename.lower().endswith((".jsonl", ".ndjson", ".json")):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                row = None
            yield f"line {number}", _normalised(clean_value(row))
        return
    # newline=None: CR line ends (Excel for Mac) read as line ends, not as a broken field.
    reader = csv.DictReader(io.StringIO(text, newline=None))
    try:
        reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in reader.fieldnames]
        if missing:
            raise PingRejected(f"missing column(s): {', '.join(missing)}")
        # Read whole before anything is stored: a record the reader cannot parse refuses the
        # file, never half of it.
        rows = [(f"line {reader.line_num}", row) for row in reader]
    except csv.Error as exc:
        raise PingRejected(f"line {reader.line_num + 1}: not valid CSV ({exc})") from None
    yield from rows


def _normalised(row: object) -> object:
    if not isinstance(row, dict):
        return row
    return {str(key).strip().lower(): value for key, value in row.items()}


def parse_saas_row(row: object, *, line: int, now: datetime | None = None) -> SaasRow:
    """Validate one namespace row; raises PingRejected naming the field and the problem.

    The snapshot date is held to the same clock as a ping's `recorded_at` (`check_recorded_at`).

    Seats and usage columns that are blank, negative (GitLab's sentinels), fractional or not
    numbers are unknown (None), never 0. Namespaces and subscription names are trimmed.
    """
    if not isinstance(row, dict):
        raise PingRejected("not a JSON object" if row is None else "row is not an object")
    namespace_id = _count(row.get("namespace_id"))
    if namespace_id is None or namespace_id <= 0:
        shown = str(row.get("namespace_id") if row.get("namespace_id") is not None else "")
        raise PingRejected(f"namespace_id {shown[:40]!r} is not a positive whole number")
    subscription = str(row.get("subscription_name") or "").strip()
    snapshot = _date(row.get("snapshot_date"))
    if snapshot is None:
        shown = str(row.get("snapshot_date") or "")
        raise PingRejected(f"snapshot_date {shown[:40]!r} is not an ISO date (YYYY-MM-DD)")
    recorded_at = datetime.combine(snapshot, time(0, 0), tzinfo=UTC)
    check_recorded_at(recorded_at, now=now)
    metrics: dict[str, int | None] = dict.fromkeys(METRIC_NAMES)
    for column, metric in SEAT_COLUMNS.items():
        metrics[metric] = _count(row.get(column))
    for name in USAGE_COLUMNS:
        metrics[name] = _count(row.get(name))
    return SaasRow(
        namespace_id=namespace_id,
        namespace_path=str(row.get("namespace_path") or "").strip()[:255],
        subscription_name=subscription[:64],
        recorded_at=recorded_at,
        metrics=metrics,
        line=line,
    )


def _count(value: object) -> int | None:
    """A non-negative whole number, or None for blanks, sentinels and junk."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        try:
            value = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or value < 0 or value > 2**63 - 1:
        return None
    return value


def _date(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None
