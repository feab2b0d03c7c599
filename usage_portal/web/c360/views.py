"""Account C360 pages: Summary, User Adoption Metrics, Usage Trends, Instances, Scorecard.

Thin views: an access helper returns the account or raises 404/403, selectors load what the page
shows in a fixed number of queries, ``charts`` turns rows into Plotly figures and ``markup`` the
large tables into HTML. Each section's builder (``_summary_parts``, ``_trend_blocks``, …) is
what ``fragments.cached`` keeps per account data version; what depends on the visitor stays
outside it or in its key. Every write checks ``Company.objects.editable_by`` (ops: every
account; a CSM: their own; a viewer: none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from datetime import date, timedelta
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import json_script
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Company, SubscriptionStatus
from accounts.services import sentiment_set
from instances.labels import label_change_apply
from instances.models import Instance, InstanceType, LabelChange
from scoring.methodology import Scorecard
from scoring.services import active_scheme, current_scorecard, stale_ping_days
from usage_portal.web.c360 import charts, markup, selectors
from usage_portal.web.c360 import datatables as tables
from usage_portal.web.c360 import fragment_cache as fragments
from usage_portal.web.c360.forms import InstanceLabelForm, SentimentForm

SECTION_TITLES = {
    "summary": "Summary",
    "scorecard": "Scorecard",
    "adoption": "User Adoption Metrics",
    "trends": "Product Usage Trends",
    "instances": "Instance and Namespace Details",
}


# --------------------------------------------------------------------------------------------------
# Access and page helpers


def _company_for(request: HttpRequest, pk: int) -> Company:
    """The account to show; every signed-in user may read every account."""
    return selectors.company_get(pk)


def _editable_company(request: HttpRequest, pk: int) -> Company:
    """The account, if ``request.user`` may change it; 404 if it does not exist, else 403."""
    company = selectors.company_get(pk)
    if not selectors.company_is_editable(company, request.user):
        raise PermissionDenied("You can change only the accounts you own.")
    return company


def _page(
    request: HttpRequest,
    template: str,
    company: Company,
    section: str,
    context: dict,
    *,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        template,
        {
            "company": company,
            "section": section,
            "section_title": SECTION_TITLES[section],
            "nav": "account",
            **context,
        },
        status=status,
    )


def _next_url(request: HttpRequest) -> str | None:
    url = request.POST.get("next") or request.GET.get("next")
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return None


def _as_of_title(title: str, as_of: date | None) -> str:
    return f"{title} · data as of {as_of:%-d %b %Y}" if as_of else title


@dataclass(frozen=True)
class ChartBlock:
    """One chart on a page, with the data behind it as a table (also for screen readers).

    The table's HTML and the figure's ``<script type="application/json">`` are written once,
    here, and only they are kept: a cached block costs nothing more to print, nor twice the
    space. No ``figure_script`` means nothing to draw (``empty`` says why).
    """

    chart_id: str
    title: str
    figure: InitVar[dict | None]
    empty: str
    headers: InitVar[tuple[tables.Cell, ...]] = ()
    rows: InitVar[Sequence[Sequence[tables.Cell]]] = ()
    note: str = ""
    table_html: str = field(init=False, default="")
    figure_script: str = field(init=False, default="")

    def __post_init__(self, figure, headers, rows) -> None:
        if rows:
            object.__setattr__(self, "table_html", tables.table_html(headers, rows))
        if figure and figure.get("data"):
            script = json_script(figure, f"{self.chart_id}-data")
            object.__setattr__(self, "figure_script", script)


# --------------------------------------------------------------------------------------------------
# Summary and CSM sentiment


def summary(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    initial = {"sentiment": company.sentiment or None, "note": company.sentiment_note}
    return _summary_page(request, company, SentimentForm(initial=initial))


def _summary_page(
    request: HttpRequest, company: Company, sentiment_form: SentimentForm, *, status: int = 200
) -> HttpResponse:
    can_edit = selectors.company_is_editable(company, request.user)
    context = fragments.cached(company, "summary", lambda: _summary_parts(company))
    context = {
        **context,
        "can_edit": can_edit,
        "sentiment_form": sentiment_form if can_edit else None,
    }
    return _page(request, "accounts/summary.html", company, "summary", context, status=status)


def _summary_parts(company: Company) -> dict:
    snapshot, previous = selectors.snapshots_recent(company)
    card = Scorecard.from_dict(snapshot.detail) if snapshot else None
    before = Scorecard.from_dict(previous.detail) if previous else None
    subscriptions = selectors.subscriptions_list(company)
    active = [s for s in subscriptions if s.status == SubscriptionStatus.ACTIVE]
    counts = selectors.instance_type_counts(company)
    pending = [selectors.ChangeView.of(c) for c in selectors.label_changes_pending(company)]
    lu = card.measures.get("license_utilization") if card else None
    return {
        "snapshot": snapshot,
        "previous": previous,
        "card": card,
        "score_rows": selectors.score_rows(card, before, selectors.scheme_for(card.scheme))
        if card
        else [],
        "lu": lu,
        "health_text": f"{card.health_score_value:.1f}"
        if card and card.health_score_value is not None
        else "",
        "lu_text": selectors.format_value(snapshot.license_utilization, "fraction")
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
    }


@require_POST
def sentiment(request: HttpRequest, pk: int) -> HttpResponse:
    company = _editable_company(request, pk)
    form = SentimentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "CSM sentiment was not saved: see the form below.")
        return _summary_page(request, company, form, status=400)
    sentiment_set(
        company=company,
        sentiment=form.cleaned_data["sentiment"],
        note=form.cleaned_data["note"],
        by=request.user,
    )
    messages.success(
        request,
        f"CSM sentiment set to {form.cleaned_data['sentiment']}. Overall health is recomputed "
        "with it in a moment.",
    )
    return redirect(reverse("account_summary", args=[company.pk]) + "#sentiment")


# --------------------------------------------------------------------------------------------------
# Scorecard explanation


def scorecard(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    context = fragments.cached(company, "scorecard", lambda: _scorecard_parts(company))
    return _page(request, "accounts/scorecard.html", company, "scorecard", context)


def _scorecard_parts(company: Company) -> dict:
    snapshot, card = current_scorecard(company)
    explanation = None
    if card is not None:
        ping_ids = set(card.ping_ids)
        for result in card.measures.values():
            ping_ids.update(p for p in result.inputs.get("ping_ids", ()) if p)
        explanation = selectors.explain_scorecard(
            card,
            customer_since=company.customer_since,
            instances=selectors.instances_list(company),
            pings=selectors.pings_by_id(ping_ids),
        )
    return {
        "snapshot": snapshot,
        "x": explanation,
        "explained": _explained(explanation) if explanation else None,
    }


def _explained(x: selectors.ScorecardExplanation) -> dict:
    """Each measure's explanation as HTML (``markup.explanation``), in the page's order."""
    metrics_url = reverse("metrics_dictionary")

    def html(m: selectors.Explanation) -> str:
        return markup.explanation(m, metrics_url=metrics_url)

    return {
        "overall": [html(x.overall), html(x.product_usage), html(x.sentiment)],
        "use_cases": [
            (uc, html(uc.rollup) if uc.rollup else "", [html(m) for m in uc.measures])
            for uc in x.use_cases
        ],
    }


# --------------------------------------------------------------------------------------------------
# User Adoption Metrics


def adoption(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    key = request.GET.get("report") or selectors.ADOPTION_REPORTS[0].key
    report = selectors.ADOPTION_BY_KEY.get(key)
    if report is None:
        raise Http404("No such report.")
    chart_block = fragments.cached(
        company, f"adoption:{report.key}", lambda: _adoption_block(company, report)
    )
    context = {
        "reports": selectors.ADOPTION_REPORTS,
        "report": report,
        "cb": chart_block,
        "months_shown": selectors.MONTHS_SHOWN,
    }
    return _page(request, "accounts/adoption.html", company, "adoption", context)


def _adoption_block(company: Company, report: selectors.RatioReport) -> ChartBlock:
    history = selectors.monthly_history(company, card_paths=selectors.ratio_card_paths(report))
    spec, rows = selectors.ratio_rows(history, report)
    points = [charts.Point(r.month, r.value, r.color) for r in rows]
    figure = charts.scored_line(
        points,
        name=report.tab,
        unit=report.unit,
        y_title=report.y_title,
        bands=selectors.band_ranges(spec.bands) if spec else (),
        markers=selectors.scheme_markers(),
    )
    headers, table_rows = tables.ratio_table(report, rows)
    chart_block = ChartBlock(
        chart_id=f"adoption-{report.key}",
        title=_as_of_title(report.title, history.as_of),
        figure=figure,
        empty=selectors.empty_reason(history, reasons=[r.reason for r in rows]),
        headers=headers,
        rows=table_rows,
        note=(
            f"Health measure “{spec.label}” ({history.scheme.label}): {spec.thresholds}. "
            "Values and colours are the scoring engine's for each month."
            if spec
            else "Context only: not a health measure in the active scheme."
        ),
    )
    return chart_block


# --------------------------------------------------------------------------------------------------
# Product Usage Trends


def trends(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    key = request.GET.get("report") or selectors.TREND_REPORTS[0].key
    if key == selectors.NOT_PRODUCTION:
        return _not_production(request, company)
    report = selectors.TREND_BY_KEY.get(key)
    if report is None:
        raise Http404("No such report.")
    blocks = fragments.cached(
        company, f"trends:{report.key}", lambda: _trend_blocks(company, report)
    )
    context = {
        "reports": selectors.TREND_REPORTS,
        "report_key": report.key,
        "report": report,
        "blocks": blocks,
        "months_shown": selectors.MONTHS_SHOWN,
    }
    return _page(request, "accounts/trends.html", company, "trends", context)


def _trend_blocks(company: Company, report: selectors.TrendReport) -> list[ChartBlock]:
    history = selectors.monthly_history(company, card_paths=selectors.trend_card_paths(report))
    markers = selectors.scheme_markers()
    months = list(history.months)
    empty = selectors.empty_reason(history)
    blocks = []
    if report.key == "license":
        blocks = _license_blocks(history, markers)
    for n, spec in enumerate(report.charts):
        series = selectors.metric_series(history, spec.metrics, colors=spec.colors)
        if spec.kind == "stacked":
            figure = charts.stacked_bars(series, y_title=spec.y_title, markers=markers)
        else:
            figure = charts.lines(series, y_title=spec.y_title, markers=markers)
        headers, rows = tables.series_table(series, months)
        blocks.append(
            ChartBlock(
                f"trend-{report.key}-{n}",
                _as_of_title(spec.title, history.as_of),
                figure,
                empty,
                headers,
                rows,
            )
        )
    if report.use_case:
        points = selectors.use_case_points(history, report.use_case)
        headers, rows = tables.points_table(points, "points", f"{report.tab} score")
        blocks.append(
            ChartBlock(
                f"trend-{report.key}-score",
                _as_of_title(f"{report.tab} health score by month", history.as_of),
                charts.scored_line(
                    points,
                    name=f"{report.tab} score",
                    unit="points",
                    y_title="score (0–100 points)",
                    bands=selectors.score_bands(history.scheme),
                    markers=markers,
                ),
                selectors.empty_reason(
                    history,
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


def _license_blocks(history: selectors.MonthlyHistory, markers) -> list[ChartBlock]:
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
    points = selectors.license_points(history)
    bands, bands_text = selectors.lu_bands(history)
    lu_headers, lu_rows = tables.points_table(points, "fraction", "License Utilization")
    reasons = [
        history.card(m)["measures"].get("license_utilization", {}).get("reason") for m in months
    ]
    return [
        ChartBlock(
            "trend-license-seats",
            _as_of_title("Billable users vs licensed seats", history.as_of),
            charts.lines(seats, y_title="users", markers=markers),
            selectors.empty_reason(history, reasons=reasons),
            headers,
            rows,
        ),
        ChartBlock(
            "trend-license-lu",
            _as_of_title("License Utilization by month", history.as_of),
            charts.scored_line(
                points,
                name="License Utilization",
                unit="fraction",
                y_title="% of licensed seats",
                bands=bands,
                markers=markers,
            ),
            selectors.empty_reason(history, reasons=reasons),
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


def _not_production(request: HttpRequest, company: Company) -> HttpResponse:
    """Usage of every instance outside health measures: what to review before labeling one."""
    can_edit = selectors.company_is_editable(company, request.user)
    raw_id = request.GET.get("instance") or ""
    # Edit links come back here; built from the parameters that matter, so that other query
    # strings neither reach the cached links nor make entries of their own.
    path = f"{request.path}?report={selectors.NOT_PRODUCTION}"
    path += f"&instance={quote(raw_id)}" if raw_id else ""
    context = fragments.cached(
        company,
        "not_production",
        lambda: _not_production_parts(company, raw_id, can_edit=can_edit, path=path),
        raw_id,
        can_edit,
    )
    context = {
        **context,
        "reports": selectors.TREND_REPORTS,
        "report_key": selectors.NOT_PRODUCTION,
        "can_edit": can_edit,
        "months_shown": selectors.MONTHS_SHOWN,
    }
    return _page(request, "accounts/not_production.html", company, "trends", context)


def _not_production_parts(company: Company, raw_id: str, *, can_edit: bool, path: str) -> dict:
    instances = selectors.instances_list(company)
    outside = selectors.outside_health(instances)
    markers = selectors.scheme_markers()
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
        fields=("recorded_at", *selectors.NOT_PRODUCTION_METRICS)
        if selected
        else selectors.NOT_PRODUCTION_TABLE,
    )

    blocks = []
    if selected is not None:
        months, series = selectors.instance_series(
            history, selected.pk, selectors.NOT_PRODUCTION_METRICS
        )
        empty = (
            f"{selected} has sent no usage ping in the last {selectors.MONTHS_SHOWN} months."
            if not months
            else "No values reported for these metrics."
        )
        as_of = max((history.usage[(selected.pk, m)]["recorded_at"] for m in months), default=None)
        as_of_day = as_of.date() if as_of else None
        for n, (title, chosen, y_title) in enumerate(
            (
                ("Users", series[:4], "users (last 28 days)"),
                ("Activity", series[4:], "builds / deployments (last 28 days)"),
            )
        ):
            headers, rows = tables.series_table(chosen, months)
            blocks.append(
                ChartBlock(
                    f"not-production-{selected.pk}-{n}",
                    _as_of_title(f"{title} on {selected}", as_of_day),
                    charts.lines(chosen, y_title=y_title, markers=markers),
                    empty,
                    headers,
                    rows,
                )
            )
    else:
        months, series = selectors.billable_by_instance(history, outside)
        headers, rows = tables.series_table(series, months)
        blocks.append(
            ChartBlock(
                "not-production-billable",
                _as_of_title("Billable users by instance", history.as_of),
                charts.lines(
                    series,
                    y_title="billable users",
                    right_title="Production total",
                    markers=markers,
                )
                if outside
                else None,
                "Every instance of this account is Production and in health measures."
                if not outside
                else "None of these instances has sent a usage ping in the last "
                f"{selectors.MONTHS_SHOWN} months.",
                headers,
                rows,
                note="The dashed line, on the right-hand axis, is the Production total the "
                "health measures used.",
            )
        )

    production_billable = (
        history.scores[history.months[-1]]["billable_users"] if history.months else None
    )
    latest_by_instance = selectors.latest_usage(history)
    edit_next = f"next={quote(path, safe='/')}"  # as |urlencode renders it
    rows = [
        markup.outside_row(
            instance,
            latest_by_instance.get(instance.pk) or {},
            production_billable,
            selected=selected is not None and selected.pk == instance.pk,
            edit_url=f"{reverse('instance_edit', args=(company.pk, instance.pk))}?{edit_next}"
            if can_edit
            else None,
        )
        for instance in outside
    ]
    return {"blocks": blocks, "outside_rows": rows, "selected": selected}


# --------------------------------------------------------------------------------------------------
# Instance and Namespace Details, labels


def instances(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    can_edit = selectors.company_is_editable(company, request.user)
    can_apply = request.user.has_perm("instances.apply_label_change_now")
    back = request.path  # where apply-now returns; the page takes no parameters
    context = fragments.cached(
        company,
        "instances",
        lambda: _instances_parts(company, can_edit=can_edit, can_apply=can_apply, back=back),
        can_edit,
        can_apply,
    )
    context = {
        **context,
        "rows": [fragments.csrf_fill(row, request) for row in context["rows"]],
        "can_edit": can_edit,
    }
    return _page(request, "accounts/instances.html", company, "instances", context)


def _instances_parts(company: Company, *, can_edit: bool, can_apply: bool, back: str) -> dict:
    items = selectors.instances_list(company)
    by_id = {i.pk: i for i in items}
    pending_changes = selectors.label_changes_pending(company, instances=by_id)
    recent = [
        selectors.ChangeView.of(c) for c in selectors.label_changes_recent(company, instances=by_id)
    ]
    overview = selectors.health_overview(items, pending_changes, scheme=active_scheme())
    pending = selectors.pending_by_instance([selectors.ChangeView.of(c) for c in pending_changes])
    # The request's CSRF token goes in when the rows are served (fragments.csrf_fill).
    notes = {
        instance_id: {
            f: _pending_note(
                c, can_apply=can_apply, csrf_token=fragments.CSRF_PLACEHOLDER, back=back
            )
            for f, c in changes.items()
        }
        for instance_id, changes in pending.items()
    }
    history = selectors.history_by_instance(recent)
    stale_before = timezone.now() - timedelta(days=stale_ping_days())
    # One reverse each, not one per row: …/instances/0/edit/ → …/instances/<pk>/edit/
    edit_head, edit_tail = reverse("instance_edit", args=[company.pk, 0]).rsplit("/0/", 1)
    usage_base = reverse("account_trends", args=[company.pk]) + "?report=not_production&instance="
    rows = [
        markup.instance_row(
            i,
            status=overview.statuses.get(i.pk),
            pending=notes.get(i.pk, {}),
            history=history.get(i.pk, [])[:5],
            edit_url=f"{edit_head}/{i.pk}/{edit_tail}" if can_edit else None,
            usage_url=f"{usage_base}{i.pk}",
            is_stale=i.last_ping_at is not None and i.last_ping_at < stale_before,
            stale_days=stale_ping_days(),
        )
        for i in items
    ]
    names = {pk: str(i) for pk, i in by_id.items()}
    return {
        "rows": rows,
        "overview": overview,
        "eligible_now": [names[i] for i in overview.eligible_now],
        "eligible_after": [names[i] for i in overview.eligible_after_pending],
        "has_pending": bool(pending_changes),
        "history_table": markup.label_history(recent, show_instance=True) if recent else "",
    }


def _pending_note(
    change: selectors.ChangeView, *, can_apply: bool, csrf_token: str, back: str
) -> str:
    return markup.pending_note(
        change,
        apply_url=reverse("label_apply_now", args=[change.pk]) if can_apply else None,
        csrf_token=csrf_token,
        back=back,
    )


@require_http_methods(["GET", "POST"])
def instance_edit(request: HttpRequest, pk: int, instance_id: int) -> HttpResponse:
    company = _editable_company(request, pk)
    instance = get_object_or_404(
        Instance.objects.select_related("subscription"), pk=instance_id, company=company
    )
    own = {instance.pk: instance}
    pending = {
        c.field: c
        for c in selectors.label_changes_pending(company, instance=instance, instances=own)
    }
    status = 200
    if request.method == "POST":
        form = InstanceLabelForm(request.POST, instance=instance, pending=pending)
        if form.is_valid():
            _announce(request, instance, form.save(by=request.user))
            back = reverse("account_instances", args=[company.pk])
            return redirect(_next_url(request) or f"{back}#instance-{instance.pk}")
        messages.error(request, "The labels were not changed: see the form below.")
        status = 400
    else:
        form = InstanceLabelForm(instance=instance, pending=pending)
    history = [
        selectors.ChangeView.of(c)
        for c in selectors.label_changes_recent(company, instance=instance, instances=own)
    ]
    context = {
        "instance": instance,
        "form": form,
        "pending": [
            (
                view,
                _pending_note(
                    view,
                    can_apply=request.user.has_perm("instances.apply_label_change_now"),
                    csrf_token=get_token(request),
                    back=request.get_full_path(),
                ),
            )
            for view in map(selectors.ChangeView.of, pending.values())
        ],
        "history_table": markup.label_history(history, show_instance=False) if history else "",
        "next": _next_url(request) or "",
    }
    return _page(
        request, "accounts/instance_edit.html", company, "instances", context, status=status
    )


def _announce(request: HttpRequest, instance: Instance, changes: list[LabelChange]) -> None:
    if not changes:
        messages.info(request, f"{instance}: nothing changed, the labels already had those values.")
    for change in changes:
        view = selectors.ChangeView.of(change)
        if change.is_pending:
            messages.success(
                request,
                f"{instance}: {view.field_label} {view.old_label} → {view.new_label} recorded. "
                f"Reflected in reports at {change.effective_at:%-d %b %Y %H:%M} UTC.",
            )
        else:
            messages.info(
                request,
                f"{instance}: the pending {view.field_label} change was cancelled; "
                f"it stays {view.old_label}.",
            )


@require_POST
@permission_required("instances.apply_label_change_now", raise_exception=True)
def label_change_apply_now(request: HttpRequest, change_id: int) -> HttpResponse:
    change = get_object_or_404(LabelChange.objects.select_related("instance"), pk=change_id)
    company_id = change.instance.company_id
    if (
        company_id is None
        or not Company.objects.editable_by(request.user).filter(pk=company_id).exists()
    ):
        raise PermissionDenied("You cannot change this account.")
    view = selectors.ChangeView.of(change)
    if label_change_apply(change_id=change.pk, via="apply_now", by=request.user, force=True):
        messages.success(
            request,
            f"{change.instance}: {view.field_label} is now {view.new_label}; scores are "
            "recomputed with it.",
        )
    else:
        messages.warning(
            request,
            f"{change.instance}: that {view.field_label} change is no longer pending "
            "(applied, superseded or cancelled); nothing was done.",
        )
    back = reverse("account_instances", args=[company_id])
    return redirect(_next_url(request) or f"{back}#instance-{change.instance_id}")
