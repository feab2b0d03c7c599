"""The health list's query string, read and refused by name: ``updated_since``, ``limit`` and
the opaque ``cursor`` (no ORM, no request: plain values in, plain values out).

Keyset pagination: a page is the current snapshots after a position ``(computed_at, id)`` in
that order, so an account scored while a client pages moves to the end (it is read again with
its new health) and never shifts the rows the client has still to read, as an offset would.
``id`` breaks ties: one scoring run stamps every account it rescored with the same time.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Every parameter the list takes; any other is refused, so a misspelt ``updatedSince`` is a
#: 400 rather than a full download a sync mistakes for an incremental one.
PARAMETERS = ("updated_since", "limit", "cursor")

# A '+' written unencoded in a query string arrives as a space ("…T00:00:00 02:00"): read it
# as the zone it was meant to be.
_SPACE_FOR_PLUS = re.compile(r"(\S+T\S+) (\d{2}:?\d{2})")


class BadParameter(ValueError):
    """A query parameter the list cannot use; ``parameter`` names it for the 400."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last snapshot's ``computed_at`` and ``id``."""

    computed_at: datetime
    snapshot_id: int


@dataclass(frozen=True, slots=True)
class HealthQuery:
    updated_since: datetime | None
    limit: int
    after: Position | None


def cursor_encode(position: Position) -> str:
    raw = json.dumps([position.computed_at.isoformat(), position.snapshot_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> Position:
    refused = BadParameter("cursor", "cursor is not one this API gave out: start without it")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, snapshot_id = json.loads(raw)
        computed_at = parse_datetime(stamp)
    except (binascii.Error, ValueError, TypeError):
        raise refused from None
    if computed_at is None or computed_at.tzinfo is None:
        raise refused
    if type(snapshot_id) is not int or snapshot_id < 1:
        raise refused
    return Position(_in_utc(computed_at, refused), snapshot_id)


def _in_utc(when: datetime, refused: BadParameter) -> datetime:
    # The database compares in UTC: a moment at the calendar's edge ("9999-12-31T23:00:00-05:00")
    # has no UTC form, and would be a 500 there.
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise refused from None


def _updated_since(value: str) -> datetime:
    if (meant := _SPACE_FOR_PLUS.fullmatch(value)) is not None:
        value = f"{meant[1]}+{meant[2]}"
    refused = BadParameter(
        "updated_since",
        "updated_since must be an ISO 8601 date-time with a time zone, e.g. 2025-01-31T00:00:00Z",
    )
    try:
        when = parse_datetime(value)
    except ValueError:  # well formed, out of range ("…T25:00:00Z")
        when = None
    if when is None or when.tzinfo is None:
        raise refused
    return _in_utc(when, refused)


def _limit(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise BadParameter("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def health_query(params: Mapping[str, Sequence[str]]) -> HealthQuery:
    """The query of ``params`` (each name → its values, as ``QueryDict.lists()`` gives them).

    Raises ``BadParameter`` for an unknown or repeated parameter, or a value it cannot read.
    """
    for name, values in params.items():
        if name not in PARAMETERS:
            raise BadParameter(
                name, f"unknown parameter '{name}': this endpoint takes {', '.join(PARAMETERS)}"
            )
        if len(values) != 1:
            raise BadParameter(name, f"{name} is given more than once")
    given = {name: values[0] for name, values in params.items()}
    return HealthQuery(
        updated_since=_updated_since(given["updated_since"]) if "updated_since" in given else None,
        limit=_limit(given["limit"]) if "limit" in given else DEFAULT_LIMIT,
        after=cursor_decode(given["cursor"]) if "cursor" in given else None,
    )


def next_query(query: HealthQuery, after: Position) -> dict[str, str]:
    """The parameters of the page after ``after``: the same filter and size, the new cursor."""
    params = {"limit": str(query.limit), "cursor": cursor_encode(after)}
    if query.updated_since is not None:
        params["updated_since"] = query.updated_since.isoformat()
    return params
