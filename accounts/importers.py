"""Pure reading of CRM CSV files: each kind is recognised by its header row."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from .models import Deployment, Plan, Segment, SubscriptionStatus

KINDS: dict[str, tuple[str, ...]] = {
    "companies": ("crm_account_id", "name", "segment", "csm", "customer_since"),
    "subscriptions": (
        "subscription_name",
        "crm_account_id",
        "plan",
        "licensed_seats",
        "start_date",
        "end_date",
        "status",
        "deployment",
    ),
    "license_mappings": ("license_md5", "zuora_subscription_id"),
}


class ImportError_(ValueError):
    """A file or row that cannot be imported; the message names the line and the problem."""


@dataclass(frozen=True)
class CompanyRow:
    line: int
    crm_account_id: str
    name: str
    segment: str
    csm: str
    customer_since: date | None


@dataclass(frozen=True)
class SubscriptionRow:
    line: int
    name: str
    crm_account_id: str
    plan: str
    licensed_seats: int
    start_date: date | None
    end_date: date | None
    status: str
    deployment: str
    arr: Decimal | None


@dataclass(frozen=True)
class LicenseMappingRow:
    line: int
    license_md5: str
    subscription_name: str


def detect_kind(fieldnames: list[str]) -> str:
    names = {f.strip().lower() for f in fieldnames}
    for kind, required in KINDS.items():
        if set(required) <= names:
            return kind
    raise ImportError_(
        "header not recognised; expected the columns of one of: "
        + "; ".join(f"{kind} ({','.join(cols)})" for kind, cols in KINDS.items())
    )


def read_csv(data: bytes) -> tuple[str, list, list[str]]:
    """(kind, parsed rows, errors as "line N: problem") for one CSV file's bytes."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportError_(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ImportError_("empty file (no header row)")
    reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
    kind = detect_kind(reader.fieldnames)
    parse = {"companies": _company, "subscriptions": _subscription}.get(kind, _mapping)
    rows, errors = [], []
    for row in reader:
        try:
            rows.append(parse(row, reader.line_num))
        except ImportError_ as exc:
            errors.append(f"line {reader.line_num}: {exc}")
    return kind, rows, errors


def _get(row: dict, key: str) -> str:
    return (row.get(key) or "").strip()


def _required(row: dict, key: str) -> str:
    value = _get(row, key)
    if not value:
        raise ImportError_(f"{key} is empty")
    return value


def _choice(value: str, choices, key: str, aliases: dict[str, str] | None = None) -> str:
    lookup = {str(v).lower(): v for v in choices.values}
    lookup.update({str(label).lower(): v for v, label in choices.choices})
    lookup.update(aliases or {})
    found = lookup.get(value.strip().lower())
    if found is None:
        raise ImportError_(f"{key} {value!r} is not one of {', '.join(map(str, choices.values))}")
    return found


def _date(value: str, key: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ImportError_(f"{key} {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _company(row: dict, line: int) -> CompanyRow:
    return CompanyRow(
        line=line,
        crm_account_id=_required(row, "crm_account_id")[:64],
        name=_required(row, "name")[:255],
        segment=_choice(_required(row, "segment"), Segment, "segment"),
        csm=_get(row, "csm"),
        customer_since=_date(_get(row, "customer_since"), "customer_since"),
    )


def _subscription(row: dict, line: int) -> SubscriptionRow:
    seats_text = _required(row, "licensed_seats")
    try:
        seats = int(seats_text)
    except ValueError as exc:
        raise ImportError_(f"licensed_seats {seats_text!r} is not a whole number") from exc
    if seats < 0:
        raise ImportError_("licensed_seats must not be negative")
    arr_text = _get(row, "arr")
    try:
        arr = Decimal(arr_text) if arr_text else None
    except InvalidOperation as exc:
        raise ImportError_(f"arr {arr_text!r} is not a number") from exc
    start, end = (
        _date(_get(row, "start_date"), "start_date"),
        _date(_get(row, "end_date"), "end_date"),
    )
    if start and end and end < start:
        raise ImportError_("end_date is before start_date")
    return SubscriptionRow(
        line=line,
        name=_required(row, "subscription_name")[:64],
        crm_account_id=_required(row, "crm_account_id"),
        plan=_choice(
            _required(row, "plan"),
            Plan,
            "plan",
            {"gold": "ultimate", "silver": "premium", "bronze": "starter"},
        ),
        licensed_seats=seats,
        start_date=start,
        end_date=end,
        status=_choice(_get(row, "status") or "active", SubscriptionStatus, "status"),
        deployment=_choice(
            _required(row, "deployment"),
            Deployment,
            "deployment",
            {"self_managed": "self-managed", "sm": "self-managed", "gitlab.com": "saas"},
        ),
        arr=arr,
    )


def _mapping(row: dict, line: int) -> LicenseMappingRow:
    md5 = _required(row, "license_md5").lower()
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise ImportError_(f"license_md5 {md5!r} is not 32 hexadecimal characters")
    return LicenseMappingRow(
        line=line, license_md5=md5, subscription_name=_required(row, "zuora_subscription_id")
    )
