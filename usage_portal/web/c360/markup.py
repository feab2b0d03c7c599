"""HTML of the C360 tables that grow with the account, written in Python.

The largest account has 81 instances and dozens of label changes; ~35 template lookups a row cost
most of those pages' time, so these rows are built here, with every value escaped (``e``), and the
templates print them. The markup is what the templates had; ``tests/test_c360_views.py`` reads it.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Sequence
from datetime import date, datetime

from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import floatformat
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime, template_localtime
from django.utils.translation import get_language

from instances.models import HealthInclusion, Instance

# The ``*_LABELS`` maps are ``get_FOO_display`` without its per-call work (81 rows × 3 fields).
from usage_portal.web.c360.selectors import (
    INCLUSION_LABELS,
    KIND_LABELS,
    TYPE_LABELS,
    ChangeView,
    Explanation,
    HealthStatus,
    MetricRef,
)


def type_label(i: Instance) -> str:
    return TYPE_LABELS.get(i.instance_type, i.instance_type)


def e(value) -> str:
    """``django.utils.html.escape`` (``html.escape`` of ``str(value)``) without the SafeString."""
    return html.escape(str(value))


def day(value: datetime | None) -> str:
    """``{{ value|date:"j M Y" }}``, as the template filter renders it."""
    return _day_of(localtime(value).date(), get_language()) if value else ""


@functools.lru_cache(maxsize=1024)
def _day_of(value: date, language: str | None) -> str:
    return date_filter(value, "j M Y")  # month names follow the active language (the cache key)


def stamp(value: datetime | None) -> str:
    """``{{ value|date:"j M Y H:i" }}`` (a scorecard names the same few pings per measure)."""
    return _stamp_of(localtime(value), get_language()) if value else ""


@functools.lru_cache(maxsize=4096)
def _stamp_of(value: datetime, language: str | None) -> str:
    return date_filter(value, "j M Y H:i")


def count(value) -> str:
    """``{{ value|default_if_none:"—"|intcomma }}``."""
    return "—" if value is None else f"{value:,}"


# --------------------------------------------------------------------------------------------------
# Label changes


def pending_note(
    change: ChangeView, *, apply_url: str | None, csrf_token: str, back: str
) -> SafeString:
    """A pending label change inline: its new value and when reports reflect it; with
    ``apply_url`` (ops), a form to apply it now that comes back to ``back``."""
    effective = change.change.effective_at
    form = ""
    if apply_url:
        form = (
            f'<form method="post" action="{e(apply_url)}" class="inline-form apply-now-form">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{e(csrf_token)}">'
            f'<input type="hidden" name="next" value="{e(back)}#instance-{change.instance_id}">'
            '<button type="submit" class="button small">Apply now<span class="visually-hidden">'
            f" ({e(change.field_label)} of {e(change.change.instance)})</span></button></form>"
        )
    return mark_safe(
        '<div class="pending-note"><span class="pill pill-pending">Pending</span> → '
        f"<strong>{e(change.new_label)}</strong> "
        '<span class="small">reflected in reports at '
        f'<time datetime="{e(template_localtime(effective).isoformat())}">'
        f"{e(stamp(effective))} UTC</time></span>{form}</div>"
    )


def _status(c: ChangeView) -> str:
    change = c.change
    if change.status == "pending":
        until = e(stamp(change.effective_at))
        return f'<span class="pill pill-pending">Pending</span> until {until} UTC'
    if change.status == "applied":
        via = ""
        if change.applied_via:
            by = f" by {e(change.applied_by.username)}" if change.applied_by_id else ""
            via = f' <span class="muted">({e(change.applied_via.replace("_", ""))}{by})</span>'
        return f"Applied {e(stamp(change.applied_at))} UTC{via}"
    closed = f" {e(stamp(change.closed_at))} UTC" if change.closed_at else ""
    return f"{e(change.get_status_display())}{closed}"


def label_history(changes: Sequence[ChangeView], *, show_instance: bool) -> SafeString:
    """The audit trail as a table, newest first."""
    head = '<th scope="col">Instance</th>' if show_instance else ""
    rows = "".join(
        "<tr>"
        + (
            f'<th scope="row" data-label="Instance">{e(c.change.instance)}</th>'
            if show_instance
            else ""
        )
        + f'<td data-label="Requested">{e(stamp(c.change.requested_at))} UTC</td>'
        f'<td data-label="Field">{e(c.field_label)}</td>'
        f'<td data-label="Change">{e(c.old_label)} → {e(c.new_label)}</td>'
        f'<td data-label="By">{e(c.change.author)}</td>'
        f'<td data-label="Status" class="wide">{_status(c)}</td></tr>'
        for c in changes
    )
    return mark_safe(
        '<div class="table-wrap"><table class="table table-stack compact label-history">'
        f'<thead><tr>{head}<th scope="col">Requested</th><th scope="col">Field</th>'
        '<th scope="col">Change</th><th scope="col">By</th><th scope="col">Status</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></div>"
    )


# --------------------------------------------------------------------------------------------------
# Instance and Namespace Details


def instance_row(
    i: Instance,
    *,
    status: HealthStatus | None,
    pending: dict[str, SafeString],
    history: Sequence[ChangeView],
    edit_url: str | None,
    usage_url: str,
    is_stale: bool,
    stale_days: int,
) -> SafeString:
    """A row of the instances table: ⋮ menu, name, type, health inclusion, version, pings.

    ``pending`` maps a field (``instance_type``, ``health_inclusion``) to its pending note.
    """
    name = e(i)
    history_html = (
        '<div class="menu-history"><p class="menu-heading">Recent label changes</p>'
        '<ul class="plain-list small">'
        + "".join(
            f"<li>{e(day(c.change.requested_at))}: {e(c.field_label)} {e(c.old_label)} → "
            f"{e(c.new_label)} by {e(c.change.author)} "
            f"({e(c.change.get_status_display().lower())})</li>"
            for c in history
        )
        + "</ul></div>"
        if history
        else ""
    )
    edit = f'<a class="menu-item" href="{e(edit_url)}">Edit</a>' if edit_url else ""
    identity = f"namespace {i.namespace_id}" if i.is_saas else i.uuid
    health = e(INCLUSION_LABELS.get(i.health_inclusion, i.health_inclusion))
    if status:
        tick = "✓ " if status.state == "included" else ""
        health += (
            f'<div class="health-status health-{e(status.state)} small">{tick}'
            f"{e(status.text)}</div>"
        )
    if i.subscription:
        subscription = (
            f'<span class="mono">{e(i.subscription.name)}</span>'
            f'<div class="muted small">{e(i.subscription.get_plan_display())}</div>'
        )
    else:
        subscription = '<span class="muted">not mapped</span>'
    if i.last_ping_at:
        stale = (
            f' <span class="pill pill-NA" title="No ping for more than {e(stale_days)} days">'
            "stale</span>"
            if is_stale
            else ""
        )
        pings = (
            f'<span title="first ping">{e(day(i.first_ping_at) or "—")}</span> –<br>'
            f'<span title="last ping">{e(day(i.last_ping_at))}</span>{stale}'
        )
    else:
        pings = "never"
    return mark_safe(
        f'<tr id="instance-{i.pk}" data-instance="{i.pk}"'
        + (' class="has-pending">' if pending else ">")
        + '<td class="menu-cell" data-label=""><details class="row-menu">'
        f'<summary aria-label="Actions for {name}" title="Actions">⋮</summary>'
        f'<div class="row-menu-panel">{edit}'
        f'<a class="menu-item" href="{e(usage_url)}">Usage of this instance</a>'
        f"{history_html}</div></details></td>"
        f'<th scope="row" data-label="Instance"><span class="instance-name">{name}</span>'
        f'<div class="small muted">{e(KIND_LABELS.get(i.kind, i.kind))} · '
        f'<span class="mono identity" title="{e(i.identity)}">{e(identity)}</span></div></th>'
        '<td data-label="Instance Type">'
        f'<span class="type type-{e(i.instance_type)}">{e(type_label(i))}</span>'
        f"{pending.get('instance_type', '')}</td>"
        '<td data-label="Included in Health Measure" class="health-cell">'
        f"{health}{pending.get('health_inclusion', '')}</td>"
        f'<td data-label="Version">{e(i.version or "—")}</td>'
        f'<td data-label="Subscription">{subscription}</td>'
        f'<td data-label="First / last ping" class="ping-dates">{pings}</td></tr>'
    )


# --------------------------------------------------------------------------------------------------
# NOT Production Instance Usage


def outside_row(
    i: Instance,
    latest: dict,
    production_billable: int | None,
    *,
    selected: bool,
    edit_url: str | None,
) -> SafeString:
    """A row of the table of instances outside health measures, with its latest month."""
    name = e(i)
    billable = latest.get("billable_users")
    share = (
        f"{billable / production_billable * 100:.0f}%"
        if billable is not None and production_billable
        else "—"
    )
    opt_out = (
        ' <span class="muted">(Opt-Out)</span>'
        if i.health_inclusion == HealthInclusion.OPT_OUT
        else ""
    )
    edit = (
        f' · <a href="{e(edit_url)}">Edit<span class="visually-hidden"> {name}</span></a>'
        if edit_url
        else ""
    )
    return mark_safe(
        ('<tr aria-current="true" class="is-selected">' if selected else "<tr>")
        + f'<th scope="row" data-label="Instance">{name}'
        f'<div class="mono small muted identity" title="{e(i.identity)}">{e(i.identity)}</div></th>'
        f'<td data-label="Type">{e(type_label(i))}{opt_out}</td>'
        f'<td data-label="Version" class="nowrap">{e(i.version or "—")}</td>'
        f'<td data-label="Last ping">{e(day(i.last_ping_at) or "never")}</td>'
        f'<td class="num" data-label="Billable users">{count(billable)}</td>'
        f'<td class="num" data-label="UMAU">{count(latest.get("umau"))}</td>'
        f'<td class="num" data-label="CI builds (L28)">{count(latest.get("ci_builds_l28"))}</td>'
        '<td class="num" data-label="vs Production" title="Billable users as a share of the '
        f"Production instances' billable users\">{e(share)}</td>"
        f'<td data-label=""><a href="?report=not_production&amp;instance={i.pk}">Usage'
        f'<span class="visually-hidden"> of {name}</span></a>{edit}</td></tr>'
    )


# --------------------------------------------------------------------------------------------------
# Scorecard explanation


def _metric_refs(refs: Sequence[MetricRef], metrics_url: str) -> str:
    return " + ".join(
        (
            f'<a href="{e(metrics_url)}#{e(ref.name)}">{e(ref.label)}</a>'
            if ref.in_dictionary
            else e(ref.label)
        )
        + f" <code>{e(ref.name)}</code>"
        for ref in refs
    )


def explanation(m: Explanation, *, metrics_url: str) -> SafeString:
    """One measure or roll-up of the scorecard: value, inputs, thresholds, instances, pings."""
    points = (
        f' <span class="muted small">→ {e(floatformat(m.points, "-1"))} points</span>'
        if m.points is not None and m.numerator_metrics
        else ""
    )
    reason = (
        f'<p class="na-reason"><strong>{"NA:" if m.color == "NA" else "Note:"}</strong> '
        f"{e(m.reason)}</p>"
        if m.reason
        else ""
    )
    items = []
    if m.numerator_metrics:
        scanners = (
            ""
            if m.denominator_metrics
            else ' <span class="muted">(count of scanner types with at least one scan)</span>'
        )
        items.append(
            f'<dt>Numerator</dt><dd><span class="mono" data-testid="numerator-{e(m.key)}">'
            f"{e(m.numerator_text)}</span> = "
            f"{_metric_refs(m.numerator_metrics, metrics_url)}{scanners}</dd>"
        )
    if m.denominator_metrics:
        items.append(
            f'<dt>Denominator</dt><dd><span class="mono" data-testid="denominator-{e(m.key)}">'
            f"{e(m.denominator_text)}</span> = "
            f"{_metric_refs(m.denominator_metrics, metrics_url)}</dd>"
        )
    items.extend(f"<dt>{e(what)}</dt><dd>{e(value)}</dd>" for what, value in m.parts)
    if m.account_age_months is not None:
        months = "month" if m.account_age_months == 1 else "months"
        items.append(f"<dt>Account age</dt><dd>{e(m.account_age_months)} {months}</dd>")
    if m.thresholds:
        items.append(f"<dt>Thresholds</dt><dd>{e(m.thresholds)}</dd>")
    if m.instances:
        names = ", ".join(
            f'{e(i.name)} <span class="muted">({e(i.type_label)})</span>' for i in m.instances
        )
        items.append(f"<dt>Instances</dt><dd>{names}</dd>")
    if m.pings:
        pings = "; ".join(
            f"{e(p.instance_name)}: {e(stamp(p.recorded_at))} UTC, GitLab {e(p.version)}"
            for p in m.pings
        )
        items.append(f"<dt>Pings</dt><dd>{pings}</dd>")
    anchor = e(m.anchor)
    return mark_safe(
        f'<article class="explain card" id="{anchor}" aria-labelledby="{anchor}-title">'
        f'<header class="explain-header"><h3 id="{anchor}-title">{e(m.label)}</h3>'
        f'<span class="pill pill-{e(m.color)}">{e(m.color)}</span>'
        f'<span class="explain-value" data-testid="value-{e(m.key)}">{e(m.value_text)}</span>'
        f"{points}</header>{reason}"
        f'<dl class="explain-list">{"".join(items)}</dl></article>'
    )
