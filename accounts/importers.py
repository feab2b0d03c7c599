"""Pure reading of CRM CSV files: each kind is recognised by its header row.

No database access: rows come back as plain dataclasses, every problem as "line N: problem".
Values that would not fit a column are errors, never silently cut (a cut CRM id could merge two
accounts).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from instances.transport import clean_text

from .models import Deployment, Plan, Segment, Sentiment, SubscriptionStatus

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
    # The rest of GitLab's health scorecard: Outcomes, Voice of the customer, Engagement.
    "success_plans": ("crm_account_id", "roi"),
    "support_tickets": ("crm_account_id", "month", "tickets"),
    "meetings": ("crm_account_id", "date", "personas"),
}
#: The order files must be imported in: subscriptions name companies, mappings subscriptions;
#: the scorecard's other inputs name companies.
IMPORT_ORDER = (
    "companies",
    "subscriptions",
    "license_mappings",
    "success_plans",
    "support_tickets",
    "meetings",
)
#: A cell holding only this clears an optional column; an empty cell leaves it as it is, so a
#: CRM export with a column left blank never wipes what the portal holds.
CLEAR = "-"
MAX_TICKETS = 1_000_000
#: A CSM is named by username, at most as long as django.contrib.auth allows one to be.
USERNAME_LENGTH = 150
MAX_SEATS = 2_147_483_647  # the column is a 32-bit integer
MAX_ARR = Decimal("999999999999.99")  # 14 digits, 2 after the point


_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_MONTH_RE = re.compile(r"\d{4}-\d{2}(-\d{2})?")
# str.isdigit() accepts "²" and 5,000-digit text, which int() refuses or chokes on.
_ASCII_DIGITS_RE = re.compile(r"[0-9]{1,12}")


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
    prioritization: int | None = None
    #: The optional columns this row sets (a value, or `CLEAR`); None: all of them.
    given: frozenset[str] | None = None


@dataclass(frozen=True)
class SuccessPlanRow:
    line: int
    crm_account_id: str
    roi: str
    note: str


@dataclass(frozen=True)
class TicketRow:
    line: int
    crm_account_id: str
    month: date
    tickets: int


@dataclass(frozen=True)
class MeetingRow:
    line: int
    crm_account_id: str
    day: date
    personas: str


@dataclass(frozen=True)
class SubscriptionRow:
    line: int
    name: str
    crm_account_id: str
    plan: str
    licensed_seats: int
    start_date: date | None
    end_date: date | None
    status: str  # "" when blank: "active" for a new subscription, unchanged for a known one
    deployment: str
    arr: Decimal | None
    #: The optional columns this row sets (a value, or `CLEAR`); None: all of them.
    given: frozenset[str] | None = None


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
    """(kind, parsed rows, errors as "line N: problem") for one CSV file's bytes.

    UTF-8 with or without BOM; header names are matched without regard to case or surrounding
    spaces; extra columns are ignored. A key repeated in one file (CRM account id, subscription
    name, license md5) is an error on the later line: the first one is imported. Raises
    ``ImportError_`` when the file as a whole cannot be read.
    """
    try:
        # NUL is the one character PostgreSQL refuses in text; a CRM export never means one.
        text = clean_text(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ImportError_(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise ImportError_(f"line 1: not valid CSV ({exc})") from None
    if not fieldnames:
        raise ImportError_("empty file (no header row)")
    reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames]
    kind = detect_kind(reader.fieldnames)
    parse = {
        "companies": _company,
        "subscriptions": _subscription,
        "success_plans": _success_plan,
        "support_tickets": _tickets,
        "meetings": _meeting,
    }.get(kind, _mapping)
    rows, errors = [], []
    first_line: dict[str, int] = {}
    while True:
        last = reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # A record the reader cannot parse (a bare CR, an over-long cell) is named on its own
            # line; the reader goes on with the next one, so no later row is silently dropped.
            errors.append(f"line {last + 1}: not valid CSV ({exc})")
            continue
        try:
            parsed = parse(row, reader.line_num)
        except ImportError_ as exc:
            errors.append(f"line {reader.line_num}: {exc}")
            continue
        key = _key(parsed)
        if key in first_line:
            errors.append(f"line {parsed.line}: {key!r} already appears on line {first_line[key]}")
            continue
        first_line[key] = parsed.line
        rows.append(parsed)
    return kind, rows, errors


def _key(row) -> str:
    if isinstance(row, CompanyRow | SuccessPlanRow):
        return row.crm_account_id
    if isinstance(row, TicketRow):
        return f"{row.crm_account_id} {row.month:%Y-%m}"
    if isinstance(row, MeetingRow):
        return f"{row.crm_account_id} {row.day.isoformat()}"
    if isinstance(row, SubscriptionRow):
        return row.name
    return row.license_md5


def _get(row: dict, key: str) -> str:
    return (row.get(key) or "").strip()


def _optional(row: dict, key: str, given: set[str], max_length: int | None = None) -> str:
    """An optional column's text ("" when blank or cleared); records in `given` that it is set."""
    value = _get(row, key)
    if value == CLEAR:
        given.add(key)
        return ""
    if max_length is not None and len(value) > max_length:
        raise ImportError_(f"{key} is {len(value)} characters long, over the limit of {max_length}")
    if value:
        given.add(key)
    return value


def _required(row: dict, key: str, max_length: int | None = None) -> str:
    value = _get(row, key)
    if not value:
        raise ImportError_(f"{key} is empty")
    if max_length is not None and len(value) > max_length:
        raise ImportError_(f"{key} is {len(value)} characters long, over the limit of {max_length}")
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
    # fromisoformat alone also takes 20200102 and 2020-W01-1; the files say YYYY-MM-DD.
    if not value:
        return None
    if not _ISO_DATE_RE.fullmatch(value):
        raise ImportError_(f"{key} {value!r} is not an ISO date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ImportError_(f"{key} {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _company(row: dict, line: int) -> CompanyRow:
    given: set[str] = set()
    return CompanyRow(
        line=line,
        crm_account_id=_required(row, "crm_account_id", 64),
        name=_required(row, "name", 255),
        segment=_choice(_required(row, "segment"), Segment, "segment"),
        csm=_optional(row, "csm", given, USERNAME_LENGTH),
        customer_since=_date(_optional(row, "customer_since", given), "customer_since"),
        prioritization=_prioritization(_optional(row, "prioritization", given)),
        given=frozenset(given),
    )


def _prioritization(text: str) -> int | None:
    if not text:
        return None
    if not _ASCII_DIGITS_RE.fullmatch(text) or not 1 <= int(text) <= 9:
        raise ImportError_(f"prioritization {text!r} is not a number from 1 to 9")
    return int(text)


def _success_plan(row: dict, line: int) -> SuccessPlanRow:
    return SuccessPlanRow(
        line=line,
        crm_account_id=_required(row, "crm_account_id", 64),
        roi=_choice(_required(row, "roi"), Sentiment, "roi"),
        note=_get(row, "note")[:2000],
    )


def _tickets(row: dict, line: int) -> TicketRow:
    month_text = _required(row, "month")
    try:
        if not _ISO_MONTH_RE.fullmatch(month_text):
            raise ValueError(month_text)
        month = date.fromisoformat(month_text if len(month_text) > 7 else f"{month_text}-01")
    except ValueError as exc:
        raise ImportError_(f"month {month_text!r} is not YYYY-MM") from exc
    count_text = _required(row, "tickets")
    if not _ASCII_DIGITS_RE.fullmatch(count_text) or int(count_text) > MAX_TICKETS:
        raise ImportError_(f"tickets {count_text!r} is not a whole number of tickets")
    return TicketRow(
        line, _required(row, "crm_account_id", 64), month.replace(day=1), int(count_text)
    )


def _meeting(row: dict, line: int) -> MeetingRow:
    day = _date(_required(row, "date"), "date")
    personas = ", ".join(p.strip() for p in _get(row, "personas").split(";") if p.strip())
    if len(personas) > 255:
        raise ImportError_("personas are over 255 characters long")
    return MeetingRow(line, _required(row, "crm_account_id", 64), day, personas)


def _subscription(row: dict, line: int) -> SubscriptionRow:
    seats_text = _required(row, "licensed_seats")
    try:
        seats = int(seats_text)
    except ValueError as exc:
        raise ImportError_(f"licensed_seats {seats_text!r} is not a whole number") from exc
    if not 0 <= seats <= MAX_SEATS:
        raise ImportError_(f"licensed_seats {seats_text!r} is out of range")
    given: set[str] = set()
    arr_text = _optional(row, "arr", given)
    try:
        arr = Decimal(arr_text) if arr_text else None
    except InvalidOperation as exc:
        raise ImportError_(f"arr {arr_text!r} is not a number") from exc
    if arr is not None:
        if not arr.is_finite() or not 0 <= arr <= MAX_ARR:
            raise ImportError_(f"arr {arr_text!r} must be a non-negative amount below 10^12")
        arr = arr.quantize(Decimal("0.01"))
    start, end = (
        _date(_optional(row, "start_date", given), "start_date"),
        _date(_optional(row, "end_date", given), "end_date"),
    )
    if start and end and end < start:
        raise ImportError_("end_date is before start_date")
    return SubscriptionRow(
        line=line,
        name=_required(row, "subscription_name", 64),
        crm_account_id=_required(row, "crm_account_id", 64),
        plan=_choice(
            _required(row, "plan"),
            Plan,
            "plan",
            {"gold": "ultimate", "silver": "premium", "bronze": "starter"},
        ),
        licensed_seats=seats,
        start_date=start,
        end_date=end,
        status=_status(_optional(row, "status", given)),
        deployment=_choice(
            _required(row, "deployment"),
            Deployment,
            "deployment",
            {"self_managed": "self-managed", "sm": "self-managed", "gitlab.com": "saas"},
        ),
        arr=arr,
        given=frozenset(given),
    )


def _status(text: str) -> str:
    return _choice(text, SubscriptionStatus, "status") if text else ""


def _mapping(row: dict, line: int) -> LicenseMappingRow:
    md5 = _required(row, "license_md5").lower()
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise ImportError_(f"license_md5 {md5!r} is not 32 hexadecimal characters")
    return LicenseMappingRow(
        line=line,
        license_md5=md5,
        subscription_name=_required(row, "zuora_subscription_id", 64),
    )
