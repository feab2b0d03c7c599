"""The product's own numbers for Prometheus, read at scrape time: one cheap aggregate each.

Cheap because a scrape comes every 15–60 s: each read goes through an index (the pending
label-change index, ``PendingRefresh.created_at``, ``RejectedPayload.received_at``, the primary
keys) and touches the last day's rows at most — never a count over the whole ping table,
which holds millions of rows (README, Scaling out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, Min, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from instances.models import LabelChange, RejectedPayload, UsagePing
from scoring.models import JobRun, PendingRefresh

#: The window of the ping counts: a day, the period a sender's weekly pings spread over.
WINDOW = timedelta(hours=24)

#: A rejected payload's reason as a bounded label (the reason itself carries values: sizes,
#: field names, timestamps). First match wins; the texts are those of instances.transport,
#: instances.parsing and the upload page (tests/web/test_ops_endpoints.py feeds real ones).
REJECTION_KINDS: tuple[tuple[str, Q], ...] = (
    ("too_large", Q(reason__contains="over the limit of") & Q(reason__contains=" bytes")),
    ("too_large", Q(reason__contains="exceeds the limit of")),
    ("unreadable", Q(reason__contains="malformed JSON") | Q(reason__contains="is not valid")),
    ("unreadable", Q(reason__contains="gzip stream") | Q(reason__contains="not UTF-8")),
    ("unreadable", Q(reason__contains="unsupported Content-Encoding")),
    ("recorded_in_future", Q(reason__contains=" is in the future")),
    ("recorded_before_2016", Q(reason__contains="before Service Ping existed")),
    ("bad_recorded_at", Q(reason__contains="recorded_at")),
    ("not_an_object", Q(reason__contains=", not an object")),
    ("missing_field", Q(reason__contains="missing ")),
    ("invalid_field", Q(reason__contains=" must be a ")),
    ("invalid_field", Q(reason__contains="characters long, over the limit")),
    ("invalid_field", Q(reason__contains="not text")),
    ("does_not_fit", Q(reason__contains="does not fit the database")),
    ("not_permitted", Q(reason__contains="an account you cannot change")),
)
OTHER = "other"


@dataclass(frozen=True)
class LabelChangeLag:
    pending: int
    overdue: int
    oldest_overdue_seconds: float


@dataclass(frozen=True)
class RefreshLag:
    pending_accounts: int
    oldest_seconds: float


def pings_stored_recently(now: datetime | None = None) -> dict[str, int]:
    """Pings received in the last ``WINDOW``, per source.

    ``UsagePing.received_at`` has no index, but ids grow with arrival: the newest ping received
    before the window is found walking the primary key down from the top (a day's rows), and
    only ids above it are counted. A bulk load that dates its pings in the past is counted as
    what it says.
    """
    since = (now or timezone.now()) - WINDOW
    before = UsagePing.objects.filter(received_at__lt=since).order_by("-id").values("id")[:1]
    rows = (
        UsagePing.objects.filter(received_at__gte=since, id__gt=Coalesce(Subquery(before), 0))
        .values("source")
        .annotate(n=Count("id"))
    )
    return {row["source"]: row["n"] for row in rows}


def rejected_kind() -> Case:
    return Case(
        *(When(condition, then=Value(kind)) for kind, condition in REJECTION_KINDS),
        default=Value(OTHER),
        output_field=CharField(),
    )


def pings_rejected_recently(now: datetime | None = None) -> dict[tuple[str, str], int]:
    """Payloads refused in the last ``WINDOW``, per (source, kind of reason)."""
    since = (now or timezone.now()) - WINDOW
    rows = (
        RejectedPayload.objects.filter(received_at__gte=since)
        .annotate(kind=rejected_kind())
        .values("source", "kind")
        .annotate(n=Count("id"))
    )
    return {(row["source"], row["kind"]): row["n"] for row in rows}


def label_change_lag(now: datetime | None = None) -> LabelChangeLag:
    """Pending label changes, and those past their ``effective_at`` that nothing applied yet
    (the scheduled task and the beat sweep both missed them)."""
    now = now or timezone.now()
    due = Q(effective_at__lte=now)
    row = LabelChange.objects.pending().aggregate(
        pending=Count("id"), overdue=Count("id", filter=due), oldest=Min("effective_at")
    )
    oldest = row["oldest"]
    return LabelChangeLag(
        pending=row["pending"],
        overdue=row["overdue"],
        oldest_overdue_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )


def refresh_lag(now: datetime | None = None) -> RefreshLag:
    """Accounts whose data changed and whose scores have not followed (``PendingRefresh``),
    and how long the oldest has waited: the score refresh lag."""
    now = now or timezone.now()
    row = PendingRefresh.objects.aggregate(
        accounts=Count("company_id", distinct=True), oldest=Min("created_at")
    )
    oldest = row["oldest"]
    return RefreshLag(
        pending_accounts=row["accounts"],
        oldest_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )


def job_last_successes() -> dict[str, datetime]:
    return dict(JobRun.objects.values_list("name", "last_success_at"))
