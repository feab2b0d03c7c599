"""The Account C360 sections' builders: what ``fragment_cache.cached`` keeps per account version.

Each builder (``summary_content``, ``trends_content``, …) loads its section through
``selectors`` (a fixed number of queries whatever the account's size), shapes it
(``viewmodels``, ``series``, ``explanations``) and renders the section's content with its
``templates/accounts/_<section>_content.html`` partial (and the ``_*.html`` ones that partial
includes): a cached section costs nothing more to print than its page's frame. What depends on
the visitor comes in as arguments (may they label, set sentiment, apply now), which the views
also put in the cache key; the CSRF token is ``fragment_cache.CSRF_PLACEHOLDER`` here, filled per
request (``fragment_cache.csrf_fill``).

After a write the account's version has moved, and a builder runs again: it loads its rows,
then takes the shaped and rendered content from ``fragment_cache.cached_content`` when those
rows (its *signature*: every row it read, as ``fragment_cache.row_values``, and every argument
and setting it prints) are the ones it was last built from. Only what the write changed is
shaped and rendered again; the Instances and NOT Production rows are cached one by one too
(``fragment_cache.cached_pieces``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import date, timedelta
from urllib.parse import quote

import orjson
from django.conf import settings
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from accounts.models import Company, SubscriptionStatus
from instances.models import InstanceType
from scoring.scorecard import Scorecard
from scoring.services import active_scheme, current_scorecard
from usage_portal.web.c360 import catalogue, charts, faq, selectors, series, viewmodels
from usage_portal.web.c360 import datatables as tables
from usage_portal.web.c360 import fragment_cache as fragments
from usage_portal.web.c360.explanations import explain_scorecard
from usage_portal.web.c360.viewmodels import ChangeView, InstanceRow, OutsideRow, PendingNote
from usage_portal.web.timezones import day_of


def as_of_title(title: str, as_of: date | None) -> str:
    return f"{title} · data as of {as_of:%-d %b %Y}" if as_of else title


# As django.utils.html.json_script escapes: nothing in the JSON can close the <script>.
_JSON_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def figure_script(figure: dict, element_id: str) -> SafeString:
    """``json_script`` with orjson: 1.0 ms instead of 4.5 ms for the NOT Production figure of
    81 lines (in-process, the bench book's largest account). Figures hold only JSON types."""
    text = orjson.dumps(figure).decode().translate(_JSON_SCRIPT_ESCAPES)
    return format_html(
        '<script id="{}" type="application/json">{}</script>', element_id, mark_safe(text)
    )


@dataclass(frozen=True)
class ChartBlock:
    """One chart on a page, with the data behind it as a table (also for screen readers).

    The table's HTML (``datatables.table_html``) and the figure's ``<script
    type="application/json">`` are written once, here, and only they are kept: a cached block
    costs nothing more to print, nor twice the space. No ``figure_script`` means nothing to draw
    (``empty`` says why).
    """

    chart_id: str
    title: str
    figure: InitVar[dict | None]
    empty: str
    headers: InitVar[tuple[tables.Cell, ...]] = ()
    rows: InitVar[Sequence[Sequence[tables.Cell]]] = ()
    note: str = ""
    table: InitVar[str] = ""  # the table's HTML already written (datatables.series_table_html)
    table_html: str = field(init=False, default="")
    figure_script: str = field(init=False, default="")

    def __post_init__(self, figure, headers, rows, table) -> None:
        if table:
            object.__setattr__(self, "table_html", table)
        elif rows:
            object.__setattr__(self, "table_html", tables.table_html(headers, rows))
        if figure and figure.get("data"):
            script = figure_script(figure, f"{self.chart_id}-data")
            object.__setattr__(self, "figure_script", script)


# --------------------------------------------------------------------------------------------------
# Summary


def summary_content(
    company: Company, *, csrf_value: str, forms: Callable[[], tuple] | None, cache: bool = True
) -> SafeString:
    """The Summary's content (``accounts/_summary_content.html``): headline figures, scorecard
    with trends, subscriptions, sentiment and ROI, with their forms from ``forms()`` (sentiment,
    ROI) for those who may set them. ``cache``: through ``cached_content`` (not for a refused
    form: its errors and values are the visitor's)."""
    snapshot, previous = selectors.snapshots_recent(company)
    subscriptions = selectors.subscriptions_list(company)
    counts = selectors.instance_type_counts(company)
    pending = selectors.label_changes_pending(company)

    def build() -> SafeString:
        sentiment_form, roi_form = forms() if forms else (None, None)
        context = _summary_context(snapshot, previous, subscriptions, counts, pending)
        return render_to_string(
            "accounts/_summary_content.html",
            {
                **context,
                "company": company,
                "sentiment_form": sentiment_form,
                "roi_form": roi_form,
                "csrf_value": csrf_value,
            },
        )

    if not cache:
        return build()
    by = company.sentiment_by
    signature = (
        fragments.row_values(company),
        fragments.row_values(by) if by else None,
        fragments.row_values(snapshot) if snapshot else None,
        fragments.row_values(previous) if previous else None,
        [fragments.row_values(s) for s in subscriptions],
        sorted(counts.items()),
        [(fragments.row_values(c), fragments.row_values(c.instance)) for c in pending],
        forms is not None,
        csrf_value,
    )
    return fragments.cached_content("summary", signature, build)


def _summary_context(snapshot, previous, subscriptions, counts, pending_changes) -> dict:
    card = Scorecard.from_dict(snapshot.detail) if snapshot else None
    before = Scorecard.from_dict(previous.detail) if previous else None
    active = [s for s in subscriptions if s.status == SubscriptionStatus.ACTIVE]
    pending = [ChangeView.of(c) for c in pending_changes]
    lu = card.measures.get("license_utilization") if card else None
    return {
        "snapshot": snapshot,
        "previous": previous,
        "card": card,
        "score_rows": viewmodels.score_rows(card, before, selectors.scheme_for(card.scheme))
        if card
        else [],
        "lu": lu,
        "health_text": f"{card.health_score_value:.1f}"
        if card and card.health_score_value is not None
        else "",
        "lu_text": viewmodels.format_value(snapshot.license_utilization, "fraction")
        if snapshot
        else "—",
        "subscriptions": subscriptions,
        "active_subscriptions": active,
        "licenses_sold": sum(s.licensed_seats for s in active),
        "instance_counts": [
            (label, counts[value]) for value, label in InstanceType.choices if counts.get(value)
        ],
        "instance_total": sum(counts.values()),
        "pending": pending,
        "sentiment_result": card.csm_sentiment if card else None,
        "sentiment_reason": viewmodels.sentence(card.csm_sentiment.reason) if card else None,
        "lu_reason": viewmodels.sentence(lu.reason) if lu else None,
        "warnings": [viewmodels.sentence(w) for w in card.warnings] if card else [],
    }


# --------------------------------------------------------------------------------------------------
# Scorecard explanation


def scorecard_content(company: Company, *, stale_days: int) -> SafeString:
    """The Scorecard's content (``accounts/_scorecard_content.html``): how the current score
    was computed, measure by measure, from the engine's stored scorecard."""
    snapshot, card = current_scorecard(company)
    instances, pings = [], {}
    if card is not None:
        ping_ids = set(card.ping_ids)
        for result in card.measures.values():
            ping_ids.update(p for p in result.inputs.get("ping_ids", ()) if p)
        instances = selectors.instances_list(
            company, subscriptions=False, only=(*selectors.INSTANCE_NAME, "instance_type")
        )
        pings = selectors.pings_by_id(ping_ids)

    def build() -> SafeString:
        explanation = None
        if card is not None:
            explanation = explain_scorecard(
                card, customer_since=company.customer_since, instances=instances, pings=pings
            )
        return render_to_string(
            "accounts/_scorecard_content.html",
            {
                "company": company,
                "snapshot": snapshot,
                "x": explanation,
                "explained": _explained(explanation) if explanation else "",
                "stale_days": stale_days,
            },
        )

    signature = (
        company.pk,
        company.customer_since,
        fragments.row_values(snapshot) if snapshot else None,
        [fragments.row_values(i) for i in instances],
        sorted(pings.items()),
        stale_days,
    )
    return fragments.cached_content("scorecard", signature, build)


def _explained(x) -> SafeString:
    """Each measure's and roll-up's explanation, in the page's order."""
    return render_to_string(
        "accounts/_scorecard_explanations.html",
        {
            "overall": [x.overall, x.product_usage, x.sentiment, *x.groups],
            "use_cases": x.use_cases,
            "scheme": x.scheme,
            "metrics_url": reverse("metrics_dictionary"),
        },
    )


# --------------------------------------------------------------------------------------------------
# User Adoption Metrics


def adoption_content(
    company: Company, report: catalogue.RatioReport, *, stale_days: int
) -> SafeString:
    """A User Adoption report's content (``accounts/_adoption_content.html``): its chart of the
    ratio by month, with the numbers behind it."""
    history = selectors.monthly_history(company, card_paths=catalogue.ratio_card_paths(report))
    markers = selectors.scheme_markers()

    def build() -> SafeString:
        return render_to_string(
            "accounts/_adoption_content.html",
            {
                "reports": catalogue.ADOPTION_REPORTS,
                "report": report,
                "months_shown": selectors.MONTHS_SHOWN,
                "cb": _adoption_block(history, markers, report, stale_days=stale_days),
            },
        )

    signature = (report.key, stale_days, _history_signature(history), markers)
    return fragments.cached_content("adoption", signature, build)


def _history_signature(history: selectors.MonthlyHistory) -> tuple:
    """Everything of a ``MonthlyHistory`` its charts and tables are drawn from."""
    return history.signature()


def _adoption_block(
    history: selectors.MonthlyHistory, markers, report: catalogue.RatioReport, *, stale_days: int
) -> ChartBlock:
    spec, rows = series.ratio_rows(history, report)
    points = [charts.Point(r.month, r.value, r.color) for r in rows]
    figure = charts.scored_line(
        points,
        name=report.tab,
        unit=report.unit,
        y_title=report.y_title,
        bands=series.band_ranges(spec.bands) if spec else (),
        markers=markers,
    )
    headers, table_rows = tables.ratio_table(report, rows)
    return ChartBlock(
        chart_id=f"adoption-{report.key}",
        title=as_of_title(report.title, history.as_of),
        figure=figure,
        empty=faq.empty_reason(history, stale_days=stale_days, reasons=[r.reason for r in rows]),
        headers=headers,
        rows=table_rows,
        note=(
            f"Health measure “{spec.label}” ({history.scheme.label}): {spec.thresholds}. "
            "Values and colours are the scoring engine's for each month."
            if spec
            else "Context only: not a health measure in the active scheme."
        ),
    )


# --------------------------------------------------------------------------------------------------
# Product Usage Trends


def trends_content(
    company: Company, report: catalogue.TrendReport, *, stale_days: int
) -> SafeString:
    """A Product Usage Trends report's content (``accounts/_trends_content.html``): its charts
    by month, each with the numbers behind it."""
    history = selectors.monthly_history(company, card_paths=catalogue.trend_card_paths(report))
    markers = selectors.scheme_markers()

    def build() -> SafeString:
        return render_to_string(
            "accounts/_trends_content.html",
            {
                "reports": catalogue.TREND_REPORTS,
                "report": report,
                "report_key": report.key,
                "months_shown": selectors.MONTHS_SHOWN,
                "blocks": _trend_blocks(history, markers, report, stale_days=stale_days),
            },
        )

    signature = (report.key, stale_days, _history_signature(history), markers)
    return fragments.cached_content("trends", signature, build)


def _trend_blocks(
    history: selectors.MonthlyHistory, markers, report: catalogue.TrendReport, *, stale_days: int
) -> list[ChartBlock]:
    months = list(history.months)
    empty = faq.empty_reason(history, stale_days=stale_days)
    blocks = []
    if report.key == "license":
        blocks = _license_blocks(history, markers, stale_days=stale_days)
    for n, spec in enumerate(report.charts):
        lines = series.metric_series(history, spec.metrics, colors=spec.colors)
        if spec.kind == "stacked":
            figure = charts.stacked_bars(lines, y_title=spec.y_title)
        else:
            figure = charts.lines(lines, y_title=spec.y_title)
        headers, rows = tables.series_table(lines, months)
        blocks.append(
            ChartBlock(
                f"trend-{report.key}-{n}",
                as_of_title(spec.title, history.as_of),
                figure,
                empty,
                headers,
                rows,
            )
        )
    if report.use_case:
        points = series.use_case_points(history, report.use_case)
        headers, rows = tables.points_table(points, "points", f"{report.tab} score")
        blocks.append(
            ChartBlock(
                f"trend-{report.key}-score",
                as_of_title(f"{report.tab} health score by month", history.as_of),
                charts.scored_line(
                    points,
                    name=f"{report.tab} score",
                    unit="points",
                    y_title="score (0–100 points)",
                    bands=series.score_bands(history.scheme),
                    markers=markers,
                ),
                faq.empty_reason(
                    history,
                    stale_days=stale_days,
                    reasons=[
                        history.card(m)["use_cases"].get(report.use_case, {}).get("reason")
                        for m in months
                    ],
                ),
                headers,
                rows,
                note=f"Mean of the {report.tab} measures' points; "
                f"{history.scheme.score_thresholds if history.scheme else ''}.",
            )
        )
    return blocks


def _license_blocks(
    history: selectors.MonthlyHistory, markers, *, stale_days: int
) -> list[ChartBlock]:
    months = list(history.months)
    seats = [
        charts.Series(
            "Billable users",
            [charts.Point(m, history.scores[m]["billable_users"]) for m in months],
            color=charts.PALETTE[0],
        ),
        charts.Series(
            "Licensed seats",
            [charts.Point(m, history.scores[m]["licensed_seats"]) for m in months],
            color="#1f1f2e",
            dash=True,
        ),
    ]
    headers, rows = tables.series_table(seats, months)
    points = series.license_points(history)
    bands, bands_text = series.lu_bands(history)
    lu_headers, lu_rows = tables.points_table(points, "fraction", "License Utilization")
    reasons = [
        history.card(m)["measures"].get("license_utilization", {}).get("reason") for m in months
    ]
    empty = faq.empty_reason(history, stale_days=stale_days, reasons=reasons)
    return [
        ChartBlock(
            "trend-license-seats",
            as_of_title("Billable users vs licensed seats", history.as_of),
            charts.lines(seats, y_title="users"),
            empty,
            headers,
            rows,
        ),
        ChartBlock(
            "trend-license-lu",
            as_of_title("License Utilization by month", history.as_of),
            charts.scored_line(
                points,
                name="License Utilization",
                unit="fraction",
                y_title="% of licensed seats",
                bands=bands,
                markers=markers,
            ),
            empty,
            lu_headers,
            lu_rows,
            note=_lu_note(bands_text, [r for r in reasons if r]),
        ),
    ]


def _lu_note(bands_text: str, reasons: list[str]) -> str:
    parts = ["Billable users ÷ licensed seats."]
    if bands_text:
        parts.append(f"Shaded: {bands_text}.")
    if reasons:
        parts.append(f"NA months: {reasons[-1]}.")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# NOT Production Instance Usage


def not_production_parts(company: Company, raw_id: str, *, can_label: bool, path: str) -> dict:
    """The usage of every instance outside health measures, or of the one ``raw_id`` names;
    edit links (``can_label``) come back to ``path``."""
    instances = selectors.instances_list(
        company, subscriptions=False, only=selectors.INSTANCE_USAGE
    )
    outside = viewmodels.outside_health(instances)
    selected = None
    if raw_id:
        try:
            selected = next(i for i in instances if i.pk == int(raw_id))
        except (ValueError, StopIteration):
            raise Http404("No such instance on this account.") from None
    history = selectors.monthly_history(
        company,
        card_paths=(),  # charts the instances' own usage and the stored Production totals
        usage_of={i.pk for i in outside} | ({selected.pk} if selected else set()),
        fields=("recorded_at", *catalogue.NOT_PRODUCTION_METRICS)
        if selected
        else catalogue.NOT_PRODUCTION_TABLE,
        totals=False,  # the Production total it charts is the stored billable users
    )

    def build() -> dict:
        if selected is not None:
            blocks = _instance_blocks(history, selected)
        else:
            blocks = [_billable_block(history, outside)]
        rows = _outside_rows(
            company, history, outside, selected=selected, can_label=can_label, path=path
        )
        return {"blocks": blocks, "outside_rows": rows}

    signature = (
        company.pk,
        selected.pk if selected else None,
        can_label,
        path,
        [fragments.row_values(i) for i in instances],
        _history_signature(history),
    )
    return {**fragments.cached_content("not-production", signature, build), "selected": selected}


def _outside_rows(
    company: Company,
    history: selectors.MonthlyHistory,
    outside: Sequence,
    *,
    selected,
    can_label: bool,
    path: str,
) -> SafeString:
    """The NOT Production table's rows, each from the cache when it shows the same."""
    production_billable = (
        history.scores[history.months[-1]]["billable_users"] if history.months else None
    )
    latest_by_instance = series.latest_usage(history)
    edit_next = f"next={quote(path, safe='/')}"  # as |urlencode renders it
    # One reverse, not one per row: …/instances/0/edit/ → …/instances/<pk>/edit/
    edit_head, edit_tail = reverse("instance_edit", args=[company.pk, 0]).rsplit("/0/", 1)
    rows = [
        OutsideRow.of(
            instance,
            latest_by_instance.get(instance.pk) or {},
            production_billable,
            selected=selected is not None and selected.pk == instance.pk,
            edit_url=f"{edit_head}/{instance.pk}/{edit_tail}?{edit_next}" if can_label else None,
        )
        for instance in outside
    ]

    def row_html(row: OutsideRow) -> str:
        return render_to_string("accounts/_outside_rows.html", {"rows": [row]})

    pieces = [(_outside_signature(r), functools.partial(row_html, r)) for r in rows]
    return mark_safe("".join(fragments.cached_pieces("outside-row", pieces)))  # noqa: S308


def _outside_signature(row: OutsideRow) -> tuple:
    """Every value ``accounts/_outside_rows.html`` prints for ``row`` (its cache key)."""
    i = row.instance
    return (
        i.pk,
        i.version,
        *(getattr(row, f) for f in OutsideRow.__dataclass_fields__ if f != "instance"),
    )


def _instance_blocks(history: selectors.MonthlyHistory, selected) -> list[ChartBlock]:
    months, lines = series.instance_series(history, selected.pk, catalogue.NOT_PRODUCTION_METRICS)
    empty = (
        f"{selected} has sent no usage ping in the last {selectors.MONTHS_SHOWN} months."
        if not months
        else "No values reported for these metrics."
    )
    as_of = max((history.usage[(selected.pk, m)]["recorded_at"] for m in months), default=None)
    as_of_day = day_of(as_of) if as_of else None  # the reader's day of that ping
    blocks = []
    for n, (title, chosen, y_title) in enumerate(
        (
            ("Users", lines[:4], "users (last 28 days)"),
            ("Activity", lines[4:], "builds / deployments (last 28 days)"),
        )
    ):
        headers, rows = tables.series_table(chosen, months)
        blocks.append(
            ChartBlock(
                f"not-production-{selected.pk}-{n}",
                as_of_title(f"{title} on {selected}", as_of_day),
                charts.lines(chosen, y_title=y_title),
                empty,
                headers,
                rows,
            )
        )
    return blocks


#: The NOT Production chart's panels at most: the Production total and the instances with the
#: most billable users (an account with 80 test instances would draw a chart 10,000 px tall).
NOT_PRODUCTION_PANELS = 12


def _latest(line: charts.Series) -> float:
    return next((p.value for p in reversed(line.points) if p.value is not None), 0)


def _billable_block(history: selectors.MonthlyHistory, outside) -> ChartBlock:
    months, lines = series.billable_by_instance(history, outside)
    production, instances = lines[0], lines[1:]
    largest = sorted(instances, key=_latest, reverse=True)[: NOT_PRODUCTION_PANELS - 1]
    kept = {id(line) for line in largest}
    panels = [production, *(line for line in instances if id(line) in kept)]
    note = (
        "Billable users, one panel per instance, each on its own scale; the first is the "
        "Production total the health measures used."
    )
    if len(panels) < len(lines):
        note += (
            f" Showing the {len(panels) - 1} instances with the most billable users of "
            f"{len(instances)}; the data table lists all."
        )
    return ChartBlock(
        "not-production-billable",
        as_of_title("Billable users by instance", history.as_of),
        charts.small_multiples(panels) if outside else None,
        "Every instance of this account is Production and in health measures."
        if not outside
        else "None of these instances has sent a usage ping in the last "
        f"{selectors.MONTHS_SHOWN} months.",
        note=note,
        table=tables.series_table_html(lines, months) if months else "",
    )


# --------------------------------------------------------------------------------------------------
# Instance and Namespace Details


def pending_note(change: ChangeView, *, can_apply: bool) -> PendingNote:
    """A pending change inline, with its apply-now form for those who may use it."""
    return PendingNote(change, reverse("label_apply_now", args=[change.pk]) if can_apply else None)


def label_history(changes: Sequence[ChangeView], *, show_instance: bool) -> SafeString:
    """The audit trail as a table, newest first (``accounts/_label_history.html``)."""
    return render_to_string(
        "accounts/_label_history.html", {"changes": changes, "show_instance": show_instance}
    )


def _row_signature(row: InstanceRow, stale_days: int, back: str) -> tuple:
    """Every value ``accounts/_instance_rows.html`` prints for ``row`` (its cache key)."""
    i = row.instance
    sub = i.subscription
    return (
        stale_days,
        back,
        i.pk,
        row.name,
        row.kind_label,
        row.type_label,
        row.inclusion_label,
        i.identity,
        i.instance_type,
        i.version,
        i.edition,
        (sub.name, sub.get_plan_display()) if sub else None,
        row.first_ping_text,
        row.last_ping_text,
        row.status,
        row.edit_url,
        row.usage_url,
        row.is_stale,
        tuple(_note_signature(field, note) for field, note in sorted(row.pending.items())),
        tuple(c.summary for c in row.history),
    )


def _note_signature(field: str, note: PendingNote) -> tuple:
    c = note.change
    when = c.change.effective_at
    return (field, note.apply_url, c.pk, c.instance_id, c.field_label, c.new_label, when)


def instances_content(
    company: Company, *, can_label: bool, can_apply: bool, back: str, stale_days: int
) -> SafeString:
    """The Instances section's content (``accounts/_instances_content.html``): every instance's
    row (⋮ menu, labels, pending changes, health status), the health overview and the label
    history; apply-now forms (``can_apply``) come back to ``back``."""
    scheme = active_scheme()
    stale_before = timezone.now() - timedelta(days=stale_days)
    head = (
        company.pk,
        can_label,
        can_apply,
        back,
        stale_days,
        settings.LABEL_REFRESH_DELAY_HOURS,
        scheme,
        timezone.now().date(),  # the health overview counts a stale ping's age in days
    )

    def build(rows: _InstanceRows) -> SafeString:
        return _instances_build(
            company,
            rows,
            can_label=can_label,
            can_apply=can_apply,
            back=back,
            stale_days=stale_days,
            scheme=scheme,
        )

    if fragments.caching():
        digest = selectors.instances_digest(company, stale_before=stale_before)
        if digest is not None:
            # Signed where they are (one query); the rows are read only to build the content.
            return fragments.cached_content(
                "instances", (*head, digest), lambda: build(_instances_read(company, stale_before))
            )
    rows = _instances_read(company, stale_before)
    signature = (
        *head,
        sorted(rows.stale),
        [(fragments.row_values(i), _row_or_none(i.subscription)) for i in rows.items],
        [fragments.row_values(c) for c in rows.pending_changes],
        [(fragments.row_values(c), _row_or_none(c.applied_by)) for c in rows.recent_changes],
    )
    return fragments.cached_content("instances", signature, lambda: build(rows))


@dataclass(frozen=True, slots=True)
class _InstanceRows:
    items: list
    by_id: dict
    pending_changes: list
    recent_changes: list
    stale: set


def _instances_read(company: Company, stale_before) -> _InstanceRows:
    # Every column: for 81 rows, Django's deferred loading (``only``) cost more than the five
    # columns it leaves out (0.15-0.2 ms, measured on the 50,000-account book).
    items = selectors.instances_list(company)
    by_id = {i.pk: i for i in items}
    return _InstanceRows(
        items=items,
        by_id=by_id,
        pending_changes=selectors.label_changes_pending(company, instances=by_id),
        recent_changes=selectors.label_changes_recent(company, instances=by_id),
        stale={i.pk for i in items if i.last_ping_at is not None and i.last_ping_at < stale_before},
    )


def _instances_build(
    company: Company,
    data: _InstanceRows,
    *,
    can_label: bool,
    can_apply: bool,
    back: str,
    stale_days: int,
    scheme,
) -> SafeString:
    items, by_id, pending_changes = data.items, data.by_id, data.pending_changes
    recent = [ChangeView.of(c) for c in data.recent_changes]
    overview = viewmodels.health_overview(items, pending_changes, scheme=scheme)
    pending = viewmodels.pending_by_instance([ChangeView.of(c) for c in pending_changes])
    notes = {
        instance_id: {f: pending_note(c, can_apply=can_apply) for f, c in changes.items()}
        for instance_id, changes in pending.items()
    }
    history = viewmodels.history_by_instance(recent)
    # One reverse each, not one per row: …/instances/0/edit/ → …/instances/<pk>/edit/
    edit_head, edit_tail = reverse("instance_edit", args=[company.pk, 0]).rsplit("/0/", 1)
    usage_base = reverse("account_trends", args=[company.pk]) + "?report=not_production&instance="
    rows = [
        InstanceRow.of(
            i,
            status=overview.statuses.get(i.pk),
            pending=notes.get(i.pk, {}),
            history=history.get(i.pk, [])[:5],
            edit_url=f"{edit_head}/{i.pk}/{edit_tail}" if can_label else None,
            usage_url=f"{usage_base}{i.pk}",
            is_stale=i.pk in data.stale,
        )
        for i in items
    ]
    # The request's CSRF token goes in when the page is served (fragments.csrf_fill).
    context = {
        "stale_days": stale_days,
        "csrf_value": fragments.CSRF_PLACEHOLDER,
        "back": back,
    }

    def row_html(row: InstanceRow) -> str:
        return render_to_string("accounts/_instance_rows.html", {**context, "rows": [row]})

    pieces = [(_row_signature(r, stale_days, back), functools.partial(row_html, r)) for r in rows]
    rows_html = mark_safe("".join(fragments.cached_pieces("instance-row", pieces)))  # noqa: S308
    return render_to_string(
        "accounts/_instances_content.html",
        {
            "rows_html": rows_html,
            "overview": overview,
            "eligible_now": [str(by_id[i]) for i in overview.eligible_now],
            "eligible_after": [str(by_id[i]) for i in overview.eligible_after_pending],
            "has_pending": bool(pending_changes),
            "history_table": label_history(recent, show_instance=True) if recent else "",
            "can_label": can_label,
            "label_refresh_delay_hours": settings.LABEL_REFRESH_DELAY_HOURS,
        },
    )


def _row_or_none(obj) -> tuple | None:
    return fragments.row_values(obj) if obj is not None else None
