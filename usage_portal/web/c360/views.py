"""Account C360 pages: Summary, User Adoption Metrics, Usage Trends, Instances, Scorecard.

Thin views: they find the account (``_company_for``; ``_editable_company`` for a write, which
asks ``accounts.permissions`` and refuses with 403), decide what depends on the visitor (may
they label, set sentiment, apply a change now), and serve each section's content from
``fragment_cache.cached``, built by ``sections`` per account data version, into its page's
frame (``accounts/c360_base.html``). Writes go through the services
(``accounts.services.sentiment_set``, ``instances.labels``); forms only validate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts import permissions
from accounts.models import Company
from accounts.services import roi_set, sentiment_set
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance, LabelChange
from scoring.services import stale_ping_days
from usage_portal.web.c360 import catalogue, sections, selectors
from usage_portal.web.c360 import fragment_cache as fragments
from usage_portal.web.c360.forms import InstanceLabelForm, RoiForm, SentimentForm
from usage_portal.web.c360.viewmodels import ChangeView
from usage_portal.web.timezones import moment_text

SECTION_TITLES = {
    "summary": "Summary",
    "scorecard": "Scorecard",
    "adoption": "User Adoption Metrics",
    "trends": "Product Usage Trends",
    "instances": "Instance and Namespace Details",
}
#: Ops' permission to apply a pending label change before its effective time.
APPLY_NOW = "instances.apply_label_change_now"
REFUSED = "You can change only the accounts you own."


# --------------------------------------------------------------------------------------------------
# Access and page helpers


def _company_for(request: HttpRequest, pk: int) -> Company:
    """The account to show; every signed-in user may read every account."""
    return selectors.company_get(pk)


def _editable_company(
    request: HttpRequest, pk: int | None, may: Callable[[object, Company], bool]
) -> Company:
    """The account, if ``may`` (an ``accounts.permissions`` rule) lets ``request.user`` make
    that change to it: 404 if it does not exist, 403 if not theirs to change (as for no account).

    Every write of these pages asks here, and the pages show a control exactly when it agrees.
    """
    if pk is None:
        raise PermissionDenied(REFUSED)
    company = selectors.company_get(pk)
    if not may(request.user, company):
        raise PermissionDenied(REFUSED)
    return company


def _can_apply_now(user, company: Company) -> bool:
    return user.has_perm(APPLY_NOW) and permissions.can_label(user, company)


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


# --------------------------------------------------------------------------------------------------
# Summary and CSM sentiment


def summary(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    return _summary_page(request, company)


def _summary_page(
    request: HttpRequest,
    company: Company,
    sentiment_form: SentimentForm | None = None,
    roi_form: RoiForm | None = None,
    *,
    status: int = 200,
) -> HttpResponse:
    # Sentiment and ROI are the CSM's word: the same people may set both.
    may_set = permissions.can_set_sentiment(request.user, company)

    def forms():
        return (
            sentiment_form
            or SentimentForm(
                initial={"sentiment": company.sentiment or None, "note": company.sentiment_note}
            ),
            roi_form or RoiForm(initial={"roi": company.roi or None, "note": company.roi_note}),
        )

    if sentiment_form is None and roi_form is None:
        content = fragments.cached(
            company,
            "summary",
            lambda: sections.summary_content(
                company, csrf_value=fragments.CSRF_PLACEHOLDER, forms=forms if may_set else None
            ),
            may_set,
        )
        content = fragments.csrf_fill(content, request)
    else:  # a refused form, with its errors and values: this visitor's page alone
        content = sections.summary_content(
            company,
            csrf_value=get_token(request),
            forms=forms if may_set else None,
            cache=False,
        )
    context = {"content": content}
    return _page(request, "accounts/summary.html", company, "summary", context, status=status)


@require_POST
def sentiment(request: HttpRequest, pk: int) -> HttpResponse:
    return _csm_judgement(
        request,
        pk,
        SentimentForm,
        "sentiment",
        "CSM sentiment",
        lambda company, value, note: sentiment_set(
            company=company, sentiment=value, note=note, by=request.user
        ),
    )


@require_POST
def roi(request: HttpRequest, pk: int) -> HttpResponse:
    return _csm_judgement(
        request,
        pk,
        RoiForm,
        "roi",
        "Success-plan ROI",
        lambda company, value, note: roi_set(
            company=company, roi=value, note=note, by=request.user
        ),
    )


def _csm_judgement(request, pk: int, form_class, field: str, what: str, save) -> HttpResponse:
    """A Red/Yellow/Green word with a note on the Summary (sentiment, ROI): the same people
    may give either (``can_set_sentiment``), and a refused form comes back with its reasons."""
    company = _editable_company(request, pk, permissions.can_set_sentiment)
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, f"{what} was not saved: see the form below.")
        return _summary_page(request, company, **{f"{field}_form": form}, status=400)
    save(company, form.cleaned_data[field], form.cleaned_data["note"])
    messages.success(
        request,
        f"{what} set to {form.cleaned_data[field]}. Overall health is recomputed with it in a "
        "moment.",
    )
    return redirect(reverse("account_summary", args=[company.pk]) + f"#{field}")


# --------------------------------------------------------------------------------------------------
# Scorecard explanation


def scorecard(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    stale_days = stale_ping_days()  # the page names the stale limit
    content = fragments.cached(
        company,
        "scorecard",
        lambda: sections.scorecard_content(company, stale_days=stale_days),
        stale_days,
    )
    return _page(request, "accounts/scorecard.html", company, "scorecard", {"content": content})


# --------------------------------------------------------------------------------------------------
# User Adoption Metrics and Product Usage Trends


def adoption(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    report = _report(catalogue.ADOPTION_BY_KEY, _report_key(request, catalogue.ADOPTION_REPORTS))
    content = _cached_report(company, "adoption", report, sections.adoption_content)
    return _page(request, "accounts/adoption.html", company, "adoption", {"content": content})


def trends(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    key = _report_key(request, catalogue.TREND_REPORTS)
    if key == catalogue.NOT_PRODUCTION:
        return _not_production(request, company)
    report = _report(catalogue.TREND_BY_KEY, key)
    content = _cached_report(company, "trends", report, sections.trends_content)
    return _page(request, "accounts/trends.html", company, "trends", {"content": content})


def _report_key(request: HttpRequest, reports: Sequence) -> str:
    """The ``?report=`` asked for, the first of ``reports`` when none is."""
    return request.GET.get("report") or reports[0].key


def _report(by_key: Mapping, key: str):
    report = by_key.get(key)
    if report is None:
        raise Http404("No such report.")
    return report


def _cached_report(company: Company, page: str, report, build: Callable):
    """``build(company, report, stale_days=…)`` through the section cache.

    The stale limit is part of the key: the FAQ text of an empty chart names it.
    """
    stale_days = stale_ping_days()
    return fragments.cached(
        company,
        f"{page}:{report.key}",
        lambda: build(company, report, stale_days=stale_days),
        stale_days,
    )


def _not_production(request: HttpRequest, company: Company) -> HttpResponse:
    """Usage of every instance outside health measures: what to review before labeling one."""
    can_label = permissions.can_label(request.user, company)
    raw_id = request.GET.get("instance") or ""
    # Edit links come back here; built from the parameters that matter, so that other query
    # strings neither reach the cached links nor make entries of their own.
    path = f"{request.path}?report={catalogue.NOT_PRODUCTION}"
    path += f"&instance={quote(raw_id)}" if raw_id else ""
    context = fragments.cached(
        company,
        "not_production",
        lambda: sections.not_production_parts(company, raw_id, can_label=can_label, path=path),
        raw_id,
        can_label,
    )
    context = {
        **context,
        "reports": catalogue.TREND_REPORTS,
        "report_key": catalogue.NOT_PRODUCTION,
        "can_label": can_label,
        "months_shown": selectors.MONTHS_SHOWN,
    }
    return _page(request, "accounts/not_production.html", company, "trends", context)


# --------------------------------------------------------------------------------------------------
# Instance and Namespace Details, labels


def instances(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company_for(request, pk)
    can_label = permissions.can_label(request.user, company)
    can_apply = _can_apply_now(request.user, company)
    stale_days = stale_ping_days()
    back = request.path  # where apply-now returns; the page takes no parameters
    content = fragments.cached(
        company,
        "instances",
        lambda: sections.instances_content(
            company, can_label=can_label, can_apply=can_apply, back=back, stale_days=stale_days
        ),
        can_label,
        can_apply,
        stale_days,
    )
    context = {"content": fragments.csrf_fill(content, request)}
    return _page(request, "accounts/instances.html", company, "instances", context)


@require_http_methods(["GET", "POST"])
def instance_edit(request: HttpRequest, pk: int, instance_id: int) -> HttpResponse:
    company = _editable_company(request, pk, permissions.can_label)
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
            _announce(request, instance, _labels_request(instance, form.changes(), request.user))
            back = reverse("account_instances", args=[company.pk])
            return redirect(_next_url(request) or f"{back}#instance-{instance.pk}")
        messages.error(request, "The labels were not changed: see the form below.")
        status = 400
    else:
        form = InstanceLabelForm(instance=instance, pending=pending)
    can_apply = _can_apply_now(request.user, company)
    context = {
        "instance": instance,
        "form": form,
        "pending": [
            sections.pending_note(view, can_apply=can_apply)
            for view in map(ChangeView.of, pending.values())
        ],
        "back": request.get_full_path(),  # where apply-now returns
        "history": [
            ChangeView.of(c)
            for c in selectors.label_changes_recent(company, instance=instance, instances=own)
        ],
        "next": _next_url(request) or "",
        "mapping_history": selectors.license_mapping_history(instance),
    }
    return _page(
        request, "accounts/instance_edit.html", company, "instances", context, status=status
    )


def _labels_request(instance: Instance, changes: list[tuple[str, str]], by) -> list[LabelChange]:
    """One label change per changed field, all or none: the edit is one transaction."""
    with transaction.atomic():
        requested = (
            label_change_request(instance=instance, field=name, value=value, by=by)
            for name, value in changes
        )
        return [change for change in requested if change is not None]


def _announce(request: HttpRequest, instance: Instance, changes: list[LabelChange]) -> None:
    if not changes:
        messages.info(request, f"{instance}: nothing changed, the labels already had those values.")
    for change in changes:
        view = ChangeView.of(change)
        if change.is_pending:
            messages.success(
                request,
                f"{instance}: {view.field_label} {view.old_label} → {view.new_label} recorded. "
                f"Reflected in reports at {moment_text(change.effective_at)}.",
            )
        else:
            messages.info(
                request,
                f"{instance}: the pending {view.field_label} change was cancelled; "
                f"it stays {view.old_label}.",
            )


@require_POST
@permission_required(APPLY_NOW, raise_exception=True)
def label_change_apply_now(request: HttpRequest, change_id: int) -> HttpResponse:
    change = get_object_or_404(LabelChange.objects.select_related("instance"), pk=change_id)
    company = _editable_company(request, change.instance.company_id, permissions.can_label)
    view = ChangeView.of(change)
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
    back = reverse("account_instances", args=[company.pk])
    return redirect(_next_url(request) or f"{back}#instance-{change.instance_id}")
