"""Writes for accounts: CRM import (accounts, subscriptions, mappings, success plans, support
tickets, meetings) and CSM sentiment."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

from accounts.changes import companies_changed
from accounts.importers import (
    CompanyRow,
    LicenseMappingRow,
    MeetingRow,
    SubscriptionRow,
    SuccessPlanRow,
    TicketRow,
)
from accounts.models import (
    Company,
    Meeting,
    Subscription,
    SubscriptionStatus,
    SupportTicketMonth,
    persona_names,
)
from instances.models import Instance, License, MappingSource, MonthlyUsage
from instances.services.licenses import licenses_map, subscriptions_attach_waiting

audit = logging.getLogger("usage_portal.audit")


@dataclass
class ImportSummary:
    """What an import did. ``errors`` are "line N: problem" for rows not imported; ``notes`` are
    rows deliberately left as they are (not errors)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    attached_pings: int = 0

    def changes(self, line: int, key: str, changes: list[tuple[str, object, object]]) -> None:
        """List what an update changed, one note per field, and log it for the audit trail."""
        for name, old, new in changes:
            note = f"line {line}: {key}: {name} {_shown(old)} → {_shown(new)}"
            self.notes.append(note)
            audit.info("CRM import changed %s", note)


def _shown(value) -> str:
    if value is None or value == "":
        return "(blank)"
    if isinstance(value, models.Model):
        return str(getattr(value, "username", None) or value)
    return str(value)


def companies_import(*, rows: list[CompanyRow]) -> ImportSummary:
    """Create or update companies by CRM account id; an unknown CSM username is an error line.

    An optional column left blank keeps what the company has (`CompanyRow.given`); every value
    an update changes is listed in ``notes`` as "line N: <id>: field old → new".
    """
    summary = ImportSummary()
    changed: list[int] = []
    users = {
        u.username: u
        for u in get_user_model().objects.filter(username__in={r.csm for r in rows if r.csm})
    }
    with transaction.atomic():
        existing = Company.objects.in_bulk(
            [r.crm_account_id for r in rows], field_name="crm_account_id"
        )
        for row in rows:
            if row.csm and row.csm not in users:
                summary.errors.append(f"line {row.line}: csm {row.csm!r} is not a known username")
                continue
            values = {
                "name": row.name,
                "segment": row.segment,
                "csm": users.get(row.csm),
                "customer_since": row.customer_since,
                "prioritization": row.prioritization,
            }
            company = existing.get(row.crm_account_id)
            if company is None:
                existing[row.crm_account_id] = Company.objects.create(
                    crm_account_id=row.crm_account_id, **values
                )
                summary.created += 1
                continue
            changes = _assign(company, _given(values, row.given, COMPANY_OPTIONAL))
            if changes:
                company.save()
                summary.updated += 1
                summary.changes(row.line, row.crm_account_id, changes)
                changed.append(company.pk)  # a new CSM or segment changes what counts
            else:
                summary.unchanged += 1
        companies_changed(changed, since=None, reason="companies imported")
    return summary


def subscriptions_import(*, rows: list[SubscriptionRow]) -> ImportSummary:
    """Create or update subscriptions by name, then attach pings that were waiting for them.

    A subscription moved to another company takes its instances (and their monthly rows) along.
    Companies whose subscriptions changed get one score refresh once the import commits.
    """
    summary = ImportSummary()
    touched: list[Subscription] = []
    company_ids: set[int] = set()
    with transaction.atomic():
        companies = Company.objects.in_bulk(
            {r.crm_account_id for r in rows}, field_name="crm_account_id"
        )
        existing = Subscription.objects.in_bulk([r.name for r in rows], field_name="name")
        for row in rows:
            company = _known_company(companies, row, summary)
            if company is None:
                continue
            values = {
                "company": company,
                "plan": row.plan,
                "licensed_seats": row.licensed_seats,
                "start_date": row.start_date,
                "end_date": row.end_date,
                "status": row.status or SubscriptionStatus.ACTIVE,
                "deployment": row.deployment,
                "arr": row.arr,
            }
            sub = existing.get(row.name)
            if sub is None:
                sub = existing[row.name] = Subscription.objects.create(name=row.name, **values)
                company_ids.add(company.pk)  # its Summary lists subscriptions and seats
                summary.created += 1
                touched.append(sub)
                continue
            previous_company_id = sub.company_id
            given = row.given if row.status or row.given is None else row.given - {"status"}
            changes = _assign(sub, _given(values, given, SUBSCRIPTION_OPTIONAL))
            if not changes:
                summary.unchanged += 1
                continue
            sub.save()
            summary.updated += 1
            summary.changes(row.line, row.name, changes)
            touched.append(sub)
            company_ids |= {previous_company_id, sub.company_id}
            if previous_company_id != sub.company_id:
                Instance.objects.filter(subscription=sub).update(company=sub.company_id)
                MonthlyUsage.objects.filter(instance__subscription=sub).update(
                    company=sub.company_id
                )
        summary.attached_pings = subscriptions_attach_waiting(subscriptions=touched)
        companies_changed(company_ids, reason="subscriptions imported")
    return summary


def license_mappings_import(*, rows: list[LicenseMappingRow], by=None) -> ImportSummary:
    """GitLab's ``license_md5,zuora_subscription_id`` file: map (and attach) each license.

    A license not seen in any ping yet is created, so pings arriving later map at once. A
    mapping a person made by hand is left as it is (listed in ``notes``); any other mapping is
    replaced by the file's. Waiting pings attach; queries grow with subscriptions, not rows.
    """
    summary = ImportSummary()
    with transaction.atomic():
        subs = Subscription.objects.in_bulk({r.subscription_name for r in rows}, field_name="name")
        licenses = {
            lic.md5: lic
            for lic in License.objects.filter(md5__in=[r.license_md5 for r in rows]).select_related(
                "subscription"
            )
        }
        wanted: list[tuple[LicenseMappingRow, Subscription]] = []
        for row in rows:
            sub = subs.get(row.subscription_name)
            if sub is None:
                summary.errors.append(
                    f"line {row.line}: subscription {row.subscription_name!r} is not known"
                )
                continue
            lic = licenses.get(row.license_md5)
            if lic is not None and lic.subscription_id == sub.id:
                summary.unchanged += 1
            elif lic is not None and lic.mapped_via == MappingSource.MANUAL:
                summary.notes.append(
                    f"line {row.line}: license {row.license_md5} was mapped by hand to "
                    f"{lic.subscription.name if lic.subscription_id else 'nothing'}; left as is"
                )
                summary.unchanged += 1
            else:
                wanted.append((row, sub))
        new = [License(md5=row.license_md5) for row, _ in wanted if row.license_md5 not in licenses]
        for lic in License.objects.bulk_create(new):
            licenses[lic.md5] = lic
        summary.created = len(new)
        summary.updated = len(wanted) - len(new)
        summary.attached_pings = licenses_map(
            pairs=[(licenses[row.license_md5], sub) for row, sub in wanted],
            by=by,
            via=MappingSource.IMPORT,
        )
    return summary


def success_plans_import(*, rows: list[SuccessPlanRow]) -> ImportSummary:
    """Each account's success-plan ROI (Outcomes), with its note; re-importing updates it."""
    summary = ImportSummary()
    now = timezone.now()
    with transaction.atomic():
        companies = _companies_named(rows)
        changed = []
        for row in rows:
            company = _known_company(companies, row, summary)
            if company is None:
                continue
            if (company.roi, company.roi_note) == (row.roi, row.note):
                summary.unchanged += 1
                continue
            company.roi, company.roi_note, company.roi_at = row.roi, row.note, now
            changed.append(company)
        Company.objects.bulk_update(changed, ["roi", "roi_note", "roi_at"])
        summary.updated = len(changed)
        companies_changed({c.pk for c in changed}, since=None, reason="success plans imported")
    return summary


def support_tickets_import(*, rows: list[TicketRow]) -> ImportSummary:
    """Support tickets per account and month (Voice of the customer); a month re-imported is
    replaced, never added to."""
    return _per_company_rows(
        rows,
        model=SupportTicketMonth,
        key="month",
        values=lambda row: {"tickets": row.tickets},
        same=lambda obj, row: obj.tickets == row.tickets,
        reason="support tickets imported",
    )


def meetings_import(*, rows: list[MeetingRow]) -> ImportSummary:
    """Meetings per account and day with the personas met (Engagement); a day re-imported
    takes the file's personas."""
    return _per_company_rows(
        rows,
        model=Meeting,
        key="day",
        values=lambda row: {"personas": row.personas},
        same=lambda obj, row: obj.persona_set == persona_names(row.personas),
        reason="meetings imported",
    )


def _per_company_rows(rows, *, model, key: str, values, same, reason: str) -> ImportSummary:
    """Rows of ``model`` keyed by (company, ``key``): created, updated or left as they are, in
    a fixed number of queries whatever the file's size. Unknown CRM ids are error lines; the
    changed accounts are announced once (current scores only: these have no history)."""
    summary = ImportSummary()
    with transaction.atomic():
        companies = _companies_named(rows)
        existing = {
            (obj.company_id, getattr(obj, key)): obj
            for obj in model.objects.filter(
                company__in=companies.values(), **{f"{key}__in": {getattr(r, key) for r in rows}}
            )
        }
        new, updated, changed = [], [], set()
        for row in rows:
            company = _known_company(companies, row, summary)
            if company is None:
                continue
            obj = existing.get((company.pk, getattr(row, key)))
            if obj is not None and same(obj, row):
                summary.unchanged += 1
                continue
            if obj is None:
                new.append(model(company=company, **{key: getattr(row, key)}, **values(row)))
            else:
                for name, value in values(row).items():
                    setattr(obj, name, value)
                updated.append(obj)
            changed.add(company.pk)
        model.objects.bulk_create(new)
        if updated:
            model.objects.bulk_update(updated, list(values(rows[0])))
        summary.created, summary.updated = len(new), len(updated)
        companies_changed(changed, since=None, reason=reason)
    return summary


def _companies_named(rows) -> dict[str, Company]:
    return Company.objects.in_bulk({r.crm_account_id for r in rows}, field_name="crm_account_id")


def _known_company(companies: dict, row, summary: ImportSummary) -> Company | None:
    """The company a row names by CRM id, or None with the row's error line recorded."""
    company = companies.get(row.crm_account_id)
    if company is None:
        summary.errors.append(
            f"line {row.line}: crm_account_id {row.crm_account_id!r} is not a known company"
        )
    return company


#: Columns a row may leave blank to keep the stored value (`accounts.importers.CLEAR` clears).
COMPANY_OPTIONAL = frozenset({"csm", "customer_since", "prioritization"})
SUBSCRIPTION_OPTIONAL = frozenset({"start_date", "end_date", "status", "arr"})


def _given(values: dict, given: frozenset[str] | None, optional: frozenset[str]) -> dict:
    """`values` without the optional columns a row left blank (None: the row sets them all)."""
    if given is None:
        return values
    return {k: v for k, v in values.items() if k not in optional or k in given}


def _assign(obj, values: dict) -> list[tuple[str, object, object]]:
    """Set `values` on `obj`; (field, old, new) for each one that changed."""
    changes = []
    for name, value in values.items():
        old = getattr(obj, name)
        if old != value:
            setattr(obj, name, value)
            changes.append((name, old, value))
    return changes


def sentiment_set(*, company: Company, sentiment: str, note: str, by) -> Company:
    """Record the CSM's sentiment with note, author and time, and refresh the scores."""
    company.sentiment = sentiment
    company.sentiment_note = note
    company.sentiment_by = by
    company.sentiment_at = timezone.now()
    with transaction.atomic():
        company.save(
            update_fields=[
                "sentiment",
                "sentiment_note",
                "sentiment_by",
                "sentiment_at",
                "updated_at",
            ]
        )
        # Sentiment scores only the current card: monthly history has none.
        companies_changed([company.id], since=None, reason="sentiment")
    return company


def roi_set(*, company: Company, roi: str, note: str, by) -> Company:
    """Record the success plan's ROI (Outcomes) as the CSM judges it, and refresh the score."""
    company.roi, company.roi_note, company.roi_at = roi, note, timezone.now()
    with transaction.atomic():
        company.save(update_fields=["roi", "roi_note", "roi_at", "updated_at"])
        companies_changed([company.id], since=None, reason="success-plan ROI")
    return company
