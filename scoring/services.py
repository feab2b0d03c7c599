"""Writes for scoring: load inputs set-based, score with the pure methodology, store snapshots.

``companies_refresh`` is what workers run after a ping, a label change or a sentiment change;
``companies_recompute_all`` is the set-based full recompute behind ``recompute_scores --all``,
``recompute_plan`` the same chunks fanned out to the workers (``scoring.tasks.recompute_all``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import (
    DateTimeField,
    Exists,
    F,
    JSONField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from psycopg.types.json import Jsonb

from accounts.audit import audit_record
from accounts.models import (
    AuditAction,
    Company,
    Meeting,
    SupportTicketMonth,
    is_csm_owned,
    persona_names,
)
from instances.metrics import FAILED_FIELD, METRIC_NAMES, failed_names
from instances.models import Instance, MonthlyUsage, UsagePing

from . import alerts
from .listing import listings_refresh
from .methodology import included_totals, score_company
from .models import (
    AdminJob,
    AdminJobKind,
    AdminJobState,
    MonthlyScore,
    PendingRefresh,
    RecomputeChunk,
    RecomputeRun,
    SchemeChange,
    ScoreSnapshot,
    ScoringConfig,
)
from .schemes import DEFAULT_SCHEME, PRESETS, Scheme, get_scheme
from .scorecard import CompanyInputs, InstanceCandidate, Scorecard

logger = logging.getLogger(__name__)
# Lock timeouts, deadlocks and a lost race for the current snapshot: a retry sees the winner.
RETRYABLE_ERRORS = (OperationalError, IntegrityError)
CHUNK = 1000

_COMPANY_FIELDS = (
    "id",
    "customer_since",
    "sentiment",
    "sentiment_at",
    "segment",
    "csm_id",
    "roi",
    "prioritization",
)
# Support tickets: the newest month within this many days is enough to score or say why not.
TICKETS_LOOKBACK_DAYS = 400
_INSTANCE_FIELDS = (
    "id",
    "company_id",
    "kind",
    "hostname",
    "uuid",
    "namespace_path",
    "instance_type",
    "health_inclusion",
    "subscription_id",
    "subscription__plan",
    "subscription__licensed_seats",
    "subscription__name",
    "subscription__status",
    "subscription__start_date",
    "subscription__end_date",
    "last_ping_at",
)


# --------------------------------------------------------------------------------------------------
# The active scheme


def active_scheme() -> Scheme:
    """``SCORING_SCHEME`` from the environment wins; else the admin's choice; else the default.

    ``STALE_INSTANCE_DAYS`` sets the scheme's ``stale_ping_days``: the one stale threshold, read
    by the engine and by every page that calls an instance stale.
    """
    if settings.SCORING_SCHEME:
        name = settings.SCORING_SCHEME
    else:
        name = ScoringConfig.objects.filter(pk=1).values_list("scheme", flat=True).first()
    return with_settings(get_scheme(name or DEFAULT_SCHEME))


def with_settings(scheme: Scheme) -> Scheme:
    """The preset as this deployment runs it (its stale threshold from the settings)."""
    if scheme.stale_ping_days == settings.STALE_INSTANCE_DAYS:
        return scheme
    return dataclasses.replace(scheme, stale_ping_days=settings.STALE_INSTANCE_DAYS)


def stale_ping_days() -> int:
    """After how many silent days an instance is stale (left out of scores, flagged on pages)."""
    return settings.STALE_INSTANCE_DAYS


def scheme_set(*, name: str, by=None, rebuild_history: bool = True) -> SchemeChange:
    """Switch the active scheme, record the change (and in the audit trail), and recompute
    (history too, if asked)."""
    change = scheme_switch_record(name=name, by=by, rebuild_history=rebuild_history)
    companies_recompute_all(reason=f"scheme changed to {name}", history=rebuild_history)
    return change


def scheme_switch_record(*, name: str, by=None, rebuild_history: bool = True) -> SchemeChange:
    """The switch itself, in one transaction (the caller's, when it has one): the active
    scheme, the ``SchemeChange`` the charts mark, and the audit event. Scores follow from
    ``scheme_set`` at once, or from the admin's background job (``admin_job_start``)."""
    get_scheme(name)  # unknown names fail before anything changes
    previous = active_scheme().name
    with transaction.atomic():
        config, _ = ScoringConfig.objects.update_or_create(
            pk=1, defaults={"scheme": name, "changed_at": timezone.now(), "changed_by": by}
        )
        change = SchemeChange.objects.create(
            from_scheme=previous, to_scheme=name, changed_by=by, rebuilt_history=rebuild_history
        )
        audit_record(
            actor=by,
            action=AuditAction.SCHEME_SWITCHED,
            target=config,
            detail={"from": previous, "to": name, "rebuild_history": rebuild_history},
        )
    return change


# --------------------------------------------------------------------------------------------------
# Loading inputs


def _candidate(row: dict, ping: dict | None, *, figures: bool = True) -> InstanceCandidate:
    """``figures=False``: the ping row holds its id only (``load_inputs(figures=False)``)."""
    is_saas = row["kind"] == "saas"
    ping_id = ping["id"] if ping else None
    if not figures:
        ping = None
    return InstanceCandidate(
        instance_id=row["id"],
        name=(row["namespace_path"] if is_saas else row["hostname"] or row["uuid"]) or "",
        is_saas=is_saas,
        instance_type=row["instance_type"],
        health_inclusion=row["health_inclusion"],
        subscription_id=row["subscription_id"],
        plan=row["subscription__plan"],
        licensed_seats=row["subscription__licensed_seats"],
        ping_id=ping_id,
        recorded_at=ping["recorded_at"] if ping else None,
        version=ping["version"] if ping else None,
        metrics={name: ping[name] for name in METRIC_NAMES} if ping else {},
        failed=failed_names(ping[FAILED_FIELD]) if ping else frozenset(),
        subscription_name=row["subscription__name"],
        subscription_status=row["subscription__status"],
        subscription_start=row["subscription__start_date"],
        subscription_end=row["subscription__end_date"],
    )


def _among(company_ids: Iterable[int], field: str = "company_id") -> Q:
    """``field`` is one of these company ids, said cheaply.

    A chunk of the full recompute is a run of consecutive ids, with a gap where an account was
    deleted: said as a range less its gaps, PostgreSQL reads it off the index and Django and
    psycopg build it at once, where an IN list of a thousand ids costs ~10 ms a query to build,
    bind and plan (a third of a chunk's work when nothing changed). Scattered ids (a refresh)
    stay an IN list. Exact either way: the range is narrowed to exactly these ids.
    """
    ids = sorted(set(company_ids))
    if not ids:
        return Q(**{f"{field}__in": []})
    low, high = ids[0], ids[-1]
    gaps = high - low + 1 - len(ids)
    if gaps > len(ids) // 10:
        return Q(**{f"{field}__in": ids})
    among = Q(**{f"{field}__gte": low, f"{field}__lte": high})
    if gaps:
        among &= ~Q(**{f"{field}__in": sorted(set(range(low, high + 1)).difference(ids))})
    return among


def load_inputs(
    company_ids: Sequence[int], *, as_of: date, figures: bool = True
) -> dict[int, CompanyInputs]:
    """Inputs for these companies: companies, instances, latest pings, tickets, meetings.

    ``figures=False``: each latest ping's id without its usage figures (version, metrics):
    all that ``inputs_hash`` reads of a ping, at a fraction of the cost. For asking "did
    anything change?" only; such inputs are never scored.
    """
    companies = {
        c["id"]: c
        for c in Company.objects.filter(_among(company_ids, "id")).values(*_COMPANY_FIELDS)
    }
    rows = Instance.objects.filter(_among(company_ids))
    if figures:
        instances = list(rows.values(*_INSTANCE_FIELDS))
        latest = _latest_pings(instances)
    else:
        # The newest ping's id in the instances' own query: a third of the time of a second
        # query over a list of every instance id.
        instances = list(rows.values(*_INSTANCE_FIELDS, newest_ping_id=_newest_ping_id()))
        latest = {r["id"]: {"id": r["newest_ping_id"]} for r in instances if r["newest_ping_id"]}
    by_company: dict[int, list[InstanceCandidate]] = defaultdict(list)
    for row in instances:
        by_company[row["company_id"]].append(
            _candidate(row, latest.get(row["id"]), figures=figures)
        )
    tickets = _newest_tickets(company_ids, as_of=as_of)
    meetings = _meetings(company_ids, as_of=as_of)
    return {
        cid: CompanyInputs(
            company_id=cid,
            customer_since=c["customer_since"],
            sentiment=c["sentiment"] or None,
            sentiment_date=c["sentiment_at"].date() if c["sentiment_at"] else None,
            candidates=tuple(by_company.get(cid, ())),
            as_of=as_of,
            csm_owned=is_csm_owned(segment=c["segment"], csm_id=c["csm_id"]),
            roi=c["roi"] or None,
            tickets=tickets.get(cid),
            prioritization=c["prioritization"],
            meetings=meetings.get(cid, ()),
        )
        for cid, c in companies.items()
    }


def _newest_tickets(company_ids: Sequence[int], *, as_of: date) -> dict[int, tuple[date, int]]:
    """Each company's newest month of support tickets (looking back a bounded time)."""
    since = as_of - timedelta(days=TICKETS_LOOKBACK_DAYS)
    newest: dict[int, tuple[date, int]] = {}
    rows = SupportTicketMonth.objects.filter(
        _among(company_ids), month__gte=since, month__lte=as_of
    ).values_list("company_id", "month", "tickets")
    for cid, month, count in rows:
        if cid not in newest or month > newest[cid][0]:
            newest[cid] = (month, count)
    return newest


def _meetings(
    company_ids: Sequence[int], *, as_of: date
) -> dict[int, tuple[tuple[date, frozenset[str]], ...]]:
    """Each company's last meeting, and every meeting within the widest persona window."""
    window = max(s.persona_window_days for s in PRESETS.values())
    out: dict[int, list[tuple[date, frozenset[str]]]] = defaultdict(list)
    last = dict(
        Meeting.objects.filter(_among(company_ids), day__lte=as_of)
        .values("company_id")
        .annotate(last=Max("day"))
        .values_list("company_id", "last")
    )
    recent = Meeting.objects.filter(
        _among(company_ids), day__lte=as_of, day__gte=as_of - timedelta(days=window)
    ).values_list("company_id", "day", "personas")
    for cid, day, personas in recent:
        out[cid].append((day, persona_names(personas)))
    for cid, day in last.items():
        if all(d != day for d, _ in out[cid]):
            out[cid].append((day, frozenset()))  # older than the window: cadence only
    return {cid: tuple(sorted(rows)) for cid, rows in out.items()}


def _latest_pings(instances: Iterable[dict]) -> dict[int, dict]:
    return UsagePing.objects.latest_of(
        (r["id"] for r in instances if r["last_ping_at"]),
        "id",
        "recorded_at",
        "version",
        *METRIC_NAMES,
        FAILED_FIELD,
    )


def _newest_ping_id() -> Subquery:
    """An instance's newest ping id, as a column of an instance query: the lookup
    ``UsagePingQuerySet.latest_of`` makes (the ping at exactly ``last_ping_at``), so the id is
    the one ``_latest_pings`` would find."""
    newest = UsagePing.objects.filter(
        instance_id=OuterRef("pk"), recorded_at=OuterRef("last_ping_at")
    ).values("id")[:1]
    return Subquery(newest)


def inputs_hash(inputs: CompanyInputs, scheme: Scheme) -> str:
    """What a scorecard depends on; an unchanged hash means no new snapshot."""
    key = (
        scheme.label,
        scheme.stale_ping_days,
        inputs.as_of.isoformat(),
        inputs.customer_since.isoformat() if inputs.customer_since else None,
        inputs.sentiment,
        inputs.sentiment_date.isoformat() if inputs.sentiment_date else None,
        inputs.csm_owned,
        inputs.roi,
        inputs.prioritization,
        [inputs.tickets[0].isoformat(), inputs.tickets[1]] if inputs.tickets else None,
        [[day.isoformat(), sorted(personas)] for day, personas in inputs.meetings],
        sorted(
            (
                c.instance_id,
                c.instance_type,
                c.health_inclusion,
                c.subscription_id,
                c.licensed_seats,
                c.plan,
                c.subscription_status,
                c.subscription_start.isoformat() if c.subscription_start else None,
                c.subscription_end.isoformat() if c.subscription_end else None,
                c.ping_id,
            )
            for c in inputs.candidates
        ),
    )
    return hashlib.sha256(orjson.dumps(key)).hexdigest()


# --------------------------------------------------------------------------------------------------
# Writing snapshots


def snapshot_columns(card: Scorecard) -> dict:
    lu = card.measures.get("license_utilization")
    ue = card.measures.get("user_engagement")
    uc = card.use_cases
    inputs = lu.inputs if lu else {}
    return {
        "scheme": card.scheme,
        "as_of": card.as_of,
        "license_utilization": lu.value if lu else None,
        "license_utilization_color": lu.color if lu else "NA",
        "user_engagement_color": ue.color if ue else "NA",
        "scm_color": uc["scm"].color if "scm" in uc else "NA",
        "ci_color": uc["ci"].color if "ci" in uc else "NA",
        "cd_color": uc["cd"].color if "cd" in uc else "NA",
        "devsecops_color": uc["devsecops"].color if "devsecops" in uc else "NA",
        "product_usage_value": card.product_usage.value,
        "product_usage_color": card.product_usage.color,
        "overall_color": card.overall_health.color,
        "health_score_value": card.health_score_value,
        "adoption_count": card.adoption_count,
        "billable_users": _int(inputs.get("numerator")),
        "licensed_seats": _int(inputs.get("denominator")),
        "detail": card.to_dict(),
    }


def _int(value) -> int | None:
    return None if value is None else round(value)


def _score(company_ids: Sequence[int], *, scheme: Scheme, as_of: date, reason: str) -> int:
    """Score these companies and store a snapshot for each whose inputs changed.

    Two workers refreshing one company queue up on its row lock (taken in id order, so no
    deadlock): the second reads the first one's snapshot and the newest inputs, never an old view.
    """
    with transaction.atomic():
        _lock(company_ids)
        return _score_locked(company_ids, scheme=scheme, as_of=as_of, reason=reason)


def _score_changed(
    company_ids: Sequence[int], *, scheme: Scheme, as_of: date, reason: str, limit: int | None
) -> tuple[int, list[int]]:
    """``_score`` for the full recompute, where most companies have usually not changed: find
    the changed ones first (``_inputs_changed``) and score the first ``limit`` of them (all when
    None). Returns the snapshots written and the changed companies left unscored."""
    with transaction.atomic():
        _lock(company_ids)
        changed = _inputs_changed(company_ids, scheme=scheme, as_of=as_of)
        head, rest = (changed, []) if limit is None else (changed[:limit], changed[limit:])
        return _score_locked(head, scheme=scheme, as_of=as_of, reason=reason), rest


def _lock(company_ids: Sequence[int]) -> None:
    list(
        Company.objects.select_for_update(no_key=True)  # as CompanyQuerySet.touch locks
        .filter(_among(company_ids, "id"))
        .order_by("id")
        .values_list("id", flat=True)
    )


def _inputs_changed(company_ids: Sequence[int], *, scheme: Scheme, as_of: date) -> list[int]:
    """Those of these companies whose current snapshot does not match their inputs (or that
    have none), in id order. The same ``inputs_hash`` as the scoring compares, from
    ``load_inputs`` without the usage figures, which the hash does not read: with nothing
    changed, a chunk costs a third of a full load. Called under the chunk's row locks, so the
    full load that follows for the changed ones reads the same data.

    A snapshot computed before ``as_of`` began was scored as of an earlier day, which its hash
    holds: changed, without a look (the daily run: every account but those refreshed since
    midnight). The scoring compares the hashes all the same.
    """
    day = datetime.combine(as_of, time.min, tzinfo=UTC)
    current, older = {}, set()
    rows = ScoreSnapshot.objects.filter(_among(company_ids), is_current=True).values_list(
        "company_id", "inputs_hash", "computed_at"
    )
    for cid, digest, computed_at in rows:
        if computed_at < day:
            older.add(cid)
        else:
            current[cid] = digest
    check = sorted(set(company_ids) - older)
    inputs = load_inputs(check, as_of=as_of, figures=False) if check else {}
    changed = {cid for cid in check if cid in inputs}
    changed -= {cid for cid in changed if current.get(cid) == inputs_hash(inputs[cid], scheme)}
    return sorted(changed | older)


def _score_locked(company_ids: Sequence[int], *, scheme: Scheme, as_of: date, reason: str) -> int:
    if not company_ids:
        return 0
    inputs = load_inputs(company_ids, as_of=as_of)
    previous = {
        row["company_id"]: row
        for row in ScoreSnapshot.objects.filter(_among(company_ids), is_current=True).values(
            "inputs_hash", *alerts.PREVIOUS_FIELDS
        )
    }
    current = {cid: row["inputs_hash"] for cid, row in previous.items()}
    now = timezone.now()
    new = []
    for cid, company_inputs in inputs.items():
        digest = inputs_hash(company_inputs, scheme)
        if current.get(cid) == digest:
            continue
        card = score_company(company_inputs, scheme)
        new.append(
            ScoreSnapshot(
                company_id=cid,
                computed_at=now,
                inputs_hash=digest,
                is_current=True,
                reason=reason[:64],
                **snapshot_columns(card),
            )
        )
    if new:
        changed = [s.company_id for s in new]
        ScoreSnapshot.objects.filter(_among(changed), is_current=True).update(is_current=False)
        _snapshots_insert(new)
        listings_refresh(changed)  # the accounts' stored listing follows (scoring.listing)
        # In this transaction: an alert exists exactly when the score that dropped does.
        alerts.alerts_follow(previous=previous, written=new)
        # Rows locked above: the cache version.
        Company.objects.filter(_among(changed, "id")).touch()
    return len(new)


def _snapshots_insert(snapshots: list[ScoreSnapshot]) -> None:
    """``bulk_create``, or on PostgreSQL a COPY: a snapshot carries its whole scorecard (~9 KB
    of JSON), and an INSERT of 500 of them spent more time building, binding and parsing the
    statement than storing the rows (COPY: less than half the time, 50,000 a day). The ids are
    drawn from the table's own sequence first: the alerts point at the snapshots. The scorecard
    is written by orjson, five times quicker than the json module (the same JSON for it)."""
    if connection.vendor != "postgresql":
        ScoreSnapshot.objects.bulk_create(snapshots, batch_size=500)
        return
    fields = [f for f in ScoreSnapshot._meta.concrete_fields if not f.primary_key]
    json_fields = {f.attname for f in fields if isinstance(f, JSONField)}
    table = connection.ops.quote_name(ScoreSnapshot._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    # Django's errors, not psycopg's, from the COPY too: a lost race is retried as before.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [ScoreSnapshot._meta.db_table, len(snapshots)],
        )
        for snapshot, (pk,) in zip(snapshots, cursor.fetchall(), strict=True):
            snapshot.pk = pk
            snapshot._state.adding, snapshot._state.db = False, connection.alias
        with cursor.cursor.copy(f"COPY {table} ({columns}, id) FROM STDIN") as copy:
            for snapshot in snapshots:
                copy.write_row(
                    [
                        Jsonb(getattr(snapshot, f.attname), dumps=_json_bytes)
                        if f.attname in json_fields
                        else f.get_db_prep_save(getattr(snapshot, f.attname), connection)
                        for f in fields
                    ]
                    + [snapshot.pk]
                )


def _json_bytes(value) -> bytes:
    # Keys as the json module writes them (str() of an int key), not refused.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def companies_refresh(
    *,
    company_ids: Sequence[int],
    reason: str = "",
    history: bool = True,
    since: date | None = None,
    only_pending: bool = False,
) -> int:
    """Recompute these companies' scores (and monthly history); returns snapshots written.

    Settles the pending refreshes (``PendingRefresh``) this run covers, read before it starts:
    a change committed meanwhile keeps its row for the next run.

    ``only_pending`` (the refresh queued after a change): skip the companies with nothing left
    to cover. A burst of pings queues one task per ping, but the first run to start settles
    every change committed before it, so the rest of the burst's tasks find nothing and cost
    one query each: refreshes coalesce whenever the worker is busier than the senders.
    """
    company_ids = sorted(set(company_ids))
    covered_rows = list(
        _covered_pending(company_ids, history=history, since=since).values_list("id", "company_id")
    )
    if only_pending:
        company_ids = sorted({company_id for _, company_id in covered_rows})
        if not company_ids:
            return 0
    covered = [row_id for row_id, _ in covered_rows]
    scheme = active_scheme()
    written = _score(company_ids, scheme=scheme, as_of=timezone.now().date(), reason=reason)
    if history:
        monthly_scores_rebuild(company_ids=company_ids, scheme=scheme, since=since)
    PendingRefresh.objects.filter(id__in=covered).delete()
    return written


def _covered_pending(company_ids: Sequence[int], *, history: bool, since: date | None):
    """Ids of the pending refreshes a run with these arguments brings up to date."""
    rows = PendingRefresh.objects.filter(_among(company_ids))
    if not history:
        rows = rows.filter(since__isnull=True)  # the current state only
    elif since is not None:
        rows = rows.filter(Q(since__isnull=True) | Q(since__gte=since))
    return rows


def pending_refreshes_drain(*, older_than: timedelta, now=None) -> int:
    """Refresh every account with a pending refresh older than ``older_than``; accounts done.

    The backstop of "data changed → refresh": the task published after a commit normally
    settles its rows within seconds, so what is left this long was lost on the way (broker
    down, worker killed, database away past the retries). Each account is refreshed once, from
    its earliest changed day; rows are settled by ``companies_refresh`` itself, so running this
    twice, or beside the normal tasks, does no harm.
    """
    cutoff = (now or timezone.now()) - older_than
    earliest: dict[int, tuple[bool, date | None]] = {}
    rows = PendingRefresh.objects.filter(created_at__lt=cutoff).values_list("company_id", "since")
    for company_id, since in rows:
        history, first = earliest.get(company_id, (False, None))
        if since is not None:
            history, first = True, since if first is None or not history else min(first, since)
        earliest[company_id] = (history, first)
    groups: dict[tuple[bool, date | None], list[int]] = defaultdict(list)
    for company_id, key in earliest.items():
        groups[key].append(company_id)
    for (history, first), ids in groups.items():
        from_day = None if first in (None, date.min) else first
        # With history, small chunks: after an outage thousands of accounts wait here, and a
        # 1,000-account history rebuild held ~800 MB (measured at 50,000 accounts).
        size = FAN_OUT_HISTORY_CHUNK if history else CHUNK
        for start in range(0, len(ids), size):
            companies_refresh(
                company_ids=ids[start : start + size],
                reason="sweep",
                history=history,
                since=from_day,
            )
    return len(earliest)


def companies_recompute_all(
    *,
    reason: str = "recompute",
    history: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Every company, in chunks of ``CHUNK`` (bounded memory whatever the book's size), in this
    process. ``recompute_fan_out`` (``scoring.tasks``) spreads the same chunks over the workers.

    ``progress(done, total)`` is called before the first chunk and after each one (each chunk
    is committed by then); an exception it raises stops the run there.
    """
    scheme = active_scheme()
    as_of = timezone.now().date()
    ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    if progress is not None:
        progress(0, len(ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        recompute_chunk(chunk, reason=reason, history=history, as_of=as_of, scheme=scheme)
        if progress is not None:
            progress(start + len(chunk), len(ids))
    return len(ids)


def recompute_chunk(
    company_ids: Sequence[int],
    *,
    reason: str,
    history: bool,
    as_of: date,
    scheme: Scheme | None = None,
    limit: int | None = None,
    changed: bool = False,
    run: tuple[int, int] | None = None,
) -> tuple[int, list[int]]:
    """One chunk of the full recompute: returns the snapshots written and the changed
    companies left for another call (none unless ``limit``).

    Finds the companies whose inputs changed (cheaply: in a second run the same day, most have
    not), scores the first ``limit`` of them, rebuilds the monthly history of all but those
    left if asked, and settles what was pending for them when it started (all of it with the
    history; else the changes of the current state). ``changed``: these are the changed ones a
    call before left; scored without the check (scoring compares the hashes anyway).
    Idempotent: run again, it finds every hash current and writes no snapshot (the history is
    rewritten the same). ``run``: (``RecomputeRun`` id, chunk index) of a fanned-out
    recompute, stamped done by the call that leaves nothing, once its scores are committed.
    """
    scheme = scheme or active_scheme()
    # Read first: a change committed after this point keeps its row for its own refresh.
    covered = list(
        _covered_pending(company_ids, history=history, since=None).values_list("id", "company_id")
    )
    if changed:
        head, rest = (
            (company_ids, []) if limit is None else (company_ids[:limit], company_ids[limit:])
        )
        written = _score(head, scheme=scheme, as_of=as_of, reason=reason)
    else:
        written, rest = _score_changed(
            company_ids, scheme=scheme, as_of=as_of, reason=reason, limit=limit
        )
    left = set(rest)
    if history:
        monthly_scores_rebuild(
            company_ids=[cid for cid in company_ids if cid not in left], scheme=scheme
        )
    PendingRefresh.objects.filter(id__in=[pk for pk, cid in covered if cid not in left]).delete()
    if run is not None and not rest:
        _recompute_chunk_done(*run)
    return written, list(rest)


# --------------------------------------------------------------------------------------------------
# The full recompute fanned out: one task per chunk, completion in ``RecomputeRun``

#: Accounts a chunk task scores at most; the changed ones beyond go back on the queue as a task
#: of their own. A worker serving the refresh queue beside ``recompute`` takes a queued refresh
#: as soon as one of its processes finishes a task, so a ping's refresh waits up to one task:
#: 250 accounts whose inputs all changed take ~0.5-1 s (two processes and PostgreSQL on two
#: cores); 1,000 took 2-4 s, past the ping → score target. Chunks themselves stay ``CHUNK``
#: accounts: finding that nothing changed costs less per account in bigger chunks (~0.25 s
#: for 1,000, ~0.1 s for 250).
FAN_OUT_SCORE = 250
#: With monthly history (~13 accounts a second, rebuilt whether or not the scores changed),
#: the chunks themselves are small: ~2 s a chunk.
FAN_OUT_HISTORY_CHUNK = 25
#: Finished runs are kept this long (a row per run and per chunk), then deleted by the next.
RECOMPUTE_RUNS_KEPT = timedelta(days=30)


def recompute_plan(
    *, reason: str, history: bool, size: int | None = None
) -> tuple[RecomputeRun, list[list[int]]]:
    """The full recompute as chunks: every company exactly once, in id order, ``size`` at a
    time; and its ``RecomputeRun`` with one row per chunk, committed before any task runs."""
    size = size or (FAN_OUT_HISTORY_CHUNK if history else CHUNK)
    ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
    now = timezone.now()
    with transaction.atomic():
        RecomputeRun.objects.filter(started_at__lt=now - RECOMPUTE_RUNS_KEPT).delete()
        run = RecomputeRun.objects.create(
            reason=reason[:64],
            history=history,
            as_of=now.date(),
            started_at=now,
            finished_at=None if chunks else now,
            companies=len(ids),
            chunks=len(chunks),
        )
        RecomputeChunk.objects.bulk_create(
            RecomputeChunk(run=run, index=index) for index in range(len(chunks))
        )
    return run, chunks


def _recompute_chunk_done(run_id: int, index: int) -> None:
    """Stamp the chunk done, once; the chunk that leaves none undone stamps the run finished.

    Each UPDATE commits on its own, so of two last chunks finishing together, the later one's
    check sees both stamped: a run cannot stay unfinished with every chunk done.
    """
    now = timezone.now()
    chunk = RecomputeChunk.objects.filter(run_id=run_id, index=index, done_at__isnull=True)
    if not chunk.update(done_at=now):
        return  # delivered again: stamped the first time
    undone = RecomputeChunk.objects.filter(run_id=OuterRef("pk"), done_at__isnull=True)
    RecomputeRun.objects.filter(pk=run_id, finished_at__isnull=True).filter(~Exists(undone)).update(
        finished_at=now
    )


def recompute_progress(run_id: int) -> tuple[int, int, bool]:
    """(chunks done, chunks, finished) of a fanned-out recompute."""
    run = RecomputeRun.objects.get(pk=run_id)
    done = RecomputeChunk.objects.filter(run_id=run_id, done_at__isnull=False).count()
    return done, run.chunks, run.finished_at is not None


def scheme_version_sync() -> SchemeChange | None:
    """After an upgrade changed the active preset's rules (its version), rebuild under them.

    Scores record ``name@version``. When any current score was computed under another label,
    the change is recorded once (charts mark it) and every score and all monthly history are
    recomputed. Returns the recorded change, or None when every score is up to date. Safe to
    run again, or from several processes: the recording is locked and the rebuild idempotent.
    """
    scheme = active_scheme()

    def older() -> str | None:
        current = ScoreSnapshot.objects.filter(is_current=True).exclude(scheme=scheme.label)
        return current.values_list("scheme", flat=True).first()

    if older() is None:
        return None
    change = None
    with transaction.atomic():
        # One recorder at a time: the config row is the lock.
        ScoringConfig.objects.select_for_update().get_or_create(
            pk=1, defaults={"scheme": scheme.name}
        )
        previous = older()
        if (
            previous is not None
            and not SchemeChange.objects.filter(
                from_scheme=previous, to_scheme=scheme.label
            ).exists()
        ):
            change = SchemeChange.objects.create(
                from_scheme=previous, to_scheme=scheme.label, rebuilt_history=True
            )
    if change is not None:
        companies_recompute_all(reason=f"scheme {scheme.label}", history=True)
    return change


# --------------------------------------------------------------------------------------------------
# Monthly history


def monthly_inputs(
    company_ids: Sequence[int], *, since: date | None = None, today: date | None = None
) -> dict[int, dict[date, CompanyInputs]]:
    """Per company and month (from ``since``'s month on), inputs from each month's last pings.

    A month is scored as of its last day, the current one as of ``today``: as the current
    snapshot is, so the age rules (first 30 days NA, age-banded License Utilization) give the
    current month the Summary's colours, never those of a day still to come.
    """
    today = today or timezone.now().date()
    companies = {
        c["id"]: c
        for c in Company.objects.filter(_among(company_ids, "id")).values(*_COMPANY_FIELDS)
    }
    instances = {
        r["id"]: r for r in Instance.objects.filter(_among(company_ids)).values(*_INSTANCE_FIELDS)
    }
    rows = MonthlyUsage.objects.filter(instance_id__in=instances.keys())
    if since is not None:
        rows = rows.filter(month__gte=since.replace(day=1))
    rows = rows.values(
        "instance_id", "month", "ping_id", "recorded_at", "version", *METRIC_NAMES, FAILED_FIELD
    )
    grouped: dict[int, dict[date, list[InstanceCandidate]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        inst = instances[r["instance_id"]]
        ping = {**r, "id": r["ping_id"]}
        grouped[inst["company_id"]][r["month"]].append(_candidate(inst, ping))
    out: dict[int, dict[date, CompanyInputs]] = {}
    for cid, months in grouped.items():
        c = companies[cid]
        out[cid] = {
            month: CompanyInputs(
                company_id=cid,
                customer_since=c["customer_since"],
                sentiment=None,  # history scores product usage; sentiment has no history
                sentiment_date=None,
                candidates=tuple(cands),
                as_of=min(_month_end(month), today),
                csm_owned=is_csm_owned(segment=c["segment"], csm_id=c["csm_id"]),
                period_start=month,
            )
            for month, cands in months.items()
        }
    return out


def _month_end(month: date) -> date:
    nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def monthly_scores_rebuild(
    *, company_ids: Sequence[int], scheme: Scheme | None = None, since: date | None = None
) -> int:
    """Rescore monthly history (all of it, or from ``since``'s month on)."""
    scheme = scheme or active_scheme()
    per_company = monthly_inputs(company_ids, since=since)
    now = timezone.now()
    rows = []
    for cid, months in per_company.items():
        for month, inputs in months.items():
            card = score_company(inputs, scheme)
            rows.append(
                MonthlyScore(
                    company_id=cid,
                    month=month,
                    computed_at=now,
                    totals=included_totals(inputs, card, METRIC_NAMES),
                    **snapshot_columns(card),
                )
            )
    fields = [
        f.name
        for f in MonthlyScore._meta.concrete_fields
        if f.name not in ("id", "company", "month")
    ]
    with transaction.atomic():
        # Months a company no longer has usage for (an instance moved away) lose their score.
        stale = MonthlyScore.objects.filter(_among(company_ids))
        if since is not None:
            stale = stale.filter(month__gte=since.replace(day=1))
        kept = {(r.company_id, r.month) for r in rows}
        stale_ids = [
            pk
            for pk, cid, month in stale.values_list("id", "company_id", "month")
            if (cid, month) not in kept
        ]
        if stale_ids:
            MonthlyScore.objects.filter(id__in=stale_ids).delete()
        MonthlyScore.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["company", "month"],
            update_fields=fields,
        )
        Company.objects.filter(id__in=company_ids).touch()  # the C360 pages' cache version
    return len(rows)


def current_scorecard(company: Company) -> tuple[ScoreSnapshot | None, Scorecard | None]:
    snap = ScoreSnapshot.objects.filter(company=company, is_current=True).first()
    return snap, (Scorecard.from_dict(snap.detail) if snap else None)


# --------------------------------------------------------------------------------------------------
# Admin jobs: long admin actions run by a worker, their progress in ``AdminJob``

#: A running job that has written no progress for this long lost its worker (killed past the
#: time limit, or its message gone with a filesystem broker): the sweep queues it again. Far
#: longer than one chunk takes (1,000 accounts with history: ~80 s on PostgreSQL) and than
#: the task's retries wait (~4 min).
ADMIN_JOB_STALE = timedelta(minutes=15)
#: Runs a job may start before it is failed: a job that kills its worker every time (memory)
#: must not be delivered for ever. A Celery retry of a run is not a new attempt.
ADMIN_JOB_MAX_ATTEMPTS = 3


class AdminJobBusy(Exception):
    """Refused: another job holds the target (``job``; None if it ended meanwhile)."""

    def __init__(self, job: AdminJob | None):
        super().__init__(f"another job holds the target: {job}")
        self.job = job


class AdminJobLost(Exception):
    """The run no longer holds its job (the sweep queued it again): it stops where it is."""


def admin_job_start(*, kind: str, by=None, arguments: dict | None = None) -> AdminJob:
    """Record a job, queued, in one transaction with what the request itself decides.

    A scheme switch is recorded here (``scheme_switch_record``: the active scheme, the
    ``SchemeChange``, the audit event) with its job, so both commit or neither does; only the
    recompute waits for the worker. Raises ``AdminJobBusy`` while another job holds the target
    (checked first for the message, and by the constraint against two requests racing).
    The caller publishes the task after the commit (``scoring.tasks.admin_job_queue``).
    """
    arguments = dict(arguments or {})
    if kind == AdminJobKind.SCHEME_SWITCH:
        get_scheme(arguments["scheme"])  # an unknown name fails before anything is recorded
    busy = AdminJob.objects.active().first()
    if busy is not None:
        raise AdminJobBusy(busy)
    try:
        with transaction.atomic():
            job = AdminJob.objects.create(kind=kind, arguments=arguments, requested_by=by)
            if kind == AdminJobKind.SCHEME_SWITCH:
                scheme_switch_record(
                    name=arguments["scheme"],
                    by=by,
                    rebuild_history=bool(arguments.get("rebuild_history")),
                )
    except IntegrityError:
        busy = AdminJob.objects.active().first()
        if busy is None:
            raise
        raise AdminJobBusy(busy) from None
    return job


def admin_job_run(job_id: int, *, run_id: str, retry: bool = False) -> str:
    """Run the job as ``run_id`` (the task's id) and return the state it is left in.

    Idempotent: only a queued job, or one this same run already holds (the message delivered
    again after its worker died, or a Celery retry), is taken, so a duplicate message finds it
    taken or finished and does nothing, and a finished job is never run again. A run that
    takes a job starts it over from the first account (a recompute is idempotent, and the
    inputs may have moved since). Progress is one UPDATE per chunk, which also checks the run
    still holds the job.
    """
    now = timezone.now()
    claim = {
        "state": AdminJobState.RUNNING,
        "run_id": run_id,
        "heartbeat_at": now,
        "started_at": Coalesce("started_at", Value(now, output_field=DateTimeField())),
        "done_count": 0,
    }
    if not retry:
        claim["attempts"] = F("attempts") + 1
    mine = Q(state=AdminJobState.QUEUED) | Q(state=AdminJobState.RUNNING, run_id=run_id)
    if not AdminJob.objects.filter(mine, pk=job_id).update(**claim):
        state = AdminJob.objects.filter(pk=job_id).values_list("state", flat=True).first()
        logger.info("admin job %s not run by %s: it is %s", job_id, run_id, state or "gone")
        return state or ""
    job = AdminJob.objects.select_related("requested_by").get(pk=job_id)
    if job.attempts > ADMIN_JOB_MAX_ATTEMPTS:
        admin_job_fail(
            job_id,
            run_id=run_id,
            error=f"Gave up after {ADMIN_JOB_MAX_ATTEMPTS} attempts: each one's worker was lost "
            "(killed, or past the time limit).",
        )
        return AdminJobState.FAILED

    def progress(done: int, total: int) -> None:
        held = AdminJob.objects.filter(pk=job_id, run_id=run_id, state=AdminJobState.RUNNING)
        if not held.update(done_count=done, total=total, heartbeat_at=timezone.now()):
            raise AdminJobLost(job_id)

    try:
        message = _admin_job_work(job, progress)
    except AdminJobLost:
        logger.warning("admin job %s was queued again while %s ran it: stopped", job_id, run_id)
        return AdminJob.objects.filter(pk=job_id).values_list("state", flat=True).first() or ""
    except RETRYABLE_ERRORS:
        raise  # the task retries the run (its retries spent, the task marks the job failed)
    except Exception as exc:
        # A defect, or the soft time limit: retrying would fail again. Said here, not only by
        # the task's on_failure, which an eager run that propagates never calls.
        admin_job_fail(job_id, run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    AdminJob.objects.filter(pk=job_id, run_id=run_id, state=AdminJobState.RUNNING).update(
        state=AdminJobState.DONE, finished_at=timezone.now(), message=message[:500], error=""
    )
    return AdminJobState.DONE


def _admin_job_work(job: AdminJob, progress: Callable[[int, int], None]) -> str:
    """The work of each kind of job; returns the sentence its progress page ends with."""
    if job.kind == AdminJobKind.SCHEME_SWITCH:
        name = job.arguments["scheme"]
        history = bool(job.arguments.get("rebuild_history"))
        # The reason scheme_set gives: the same switch, whichever way it was made.
        count = companies_recompute_all(
            reason=f"scheme changed to {name}", history=history, progress=progress
        )
        rebuilt = ", monthly history rebuilt" if history else ""
        return f"Switched to {name}: {count:,} accounts recomputed{rebuilt}."
    if job.kind == AdminJobKind.RECOMPUTE_ALL:
        who = job.requested_by.get_username() if job.requested_by else "admin"
        count = companies_recompute_all(
            reason=f"admin: {who}",
            history=bool(job.arguments.get("history", True)),
            progress=progress,
        )
        return f"Recomputed {count:,} accounts."
    raise ValueError(f"unknown admin job kind {job.kind!r}")


def admin_job_fail(job_id: int, *, run_id: str, error: str) -> bool:
    """Mark the job failed, if ``run_id`` still holds it (a run that lost it says nothing)."""
    return bool(
        AdminJob.objects.filter(pk=job_id, run_id=run_id, state=AdminJobState.RUNNING).update(
            state=AdminJobState.FAILED, finished_at=timezone.now(), error=error[:2000]
        )
    )


def admin_jobs_lost(*, older_than: timedelta, now=None) -> list[int]:
    """Jobs whose task was lost, to publish again (the beat ``refresh-sweep``).

    Queued for longer than ``older_than``: the broker was down when the request published (or
    the message was lost). Running without progress for ``ADMIN_JOB_STALE``: the worker died
    and the message is gone; such a job goes back to queued, so the run that takes it next
    starts it over, and the lost run, if it was only slow, stops at its next chunk. Each job
    found is stamped, so it is published once per ``older_than``, not at every sweep.
    """
    now = now or timezone.now()
    lost = Q(state=AdminJobState.QUEUED, heartbeat_at__lt=now - older_than) | Q(
        state=AdminJobState.RUNNING, heartbeat_at__lt=now - max(older_than, ADMIN_JOB_STALE)
    )
    found = []
    for job_id in AdminJob.objects.filter(lost).values_list("id", flat=True):
        # Row by row, the condition checked again: a job taken meanwhile is left to its run.
        requeued = AdminJob.objects.filter(lost, pk=job_id).update(
            state=AdminJobState.QUEUED, run_id="", heartbeat_at=now
        )
        if requeued:
            found.append(job_id)
    if found:
        logger.warning("admin job(s) %s lost their task: queued again", found)
    return found
