"""Writes for accounts: CRM import (accounts, subscriptions, mappings, success plans, support
tickets, meetings), CSM sentiment, and deleting a subscription nothing depends on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.utils import timezone

from accounts.audit import audit_record
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
    AuditAction,
    Company,
    Meeting,
    Subscription,
    SubscriptionStatus,
    SupportTicketMonth,
    persona_names,
)
from accounts.roles import users_with_email
from instances.models import Instance, License, MappingSource, MonthlyUsage, UsagePing
from instances.services.licenses import licenses_map, subscriptions_attach_waiting

audit = logging.getLogger("usage_portal.audit")

#: Who made the CRM import's changes, in the audit trail (the command runs as no person).
IMPORT_ACTOR = "import_crm"


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

    def changes(
        self, line: int, key: str, changes: list[tuple[str, object, object]], *, target
    ) -> None:
        """List what an update changed, one note per field, log it, and record it in the audit
        trail (one event for the row, old and new per field; call inside the import's
        transaction, after saving ``target``)."""
        for name, old, new in changes:
            note = f"line {line}: {key}: {name} {_shown(old)} → {_shown(new)}"
            self.notes.append(note)
            audit.info("CRM import changed %s", note)
        audit_record(
            actor=None,
            actor_label=IMPORT_ACTOR,
            action=AuditAction.CRM_IMPORT_CHANGED,
            target=target,
            detail={"line": line, "changes": {name: [old, new] for name, old, new in changes}},
        )


def _shown(value) -> str:
    if value is None or value == "":
        return "(blank)"
    if isinstance(value, models.Model):
        return str(getattr(value, "username", None) or value)
    return str(value)


def companies_import(*, rows: list[CompanyRow]) -> ImportSummary:
    """Create or update companies by CRM account id; a CSM that names no user is an error line.

    The CSM column holds a username or, for people who sign in through single sign-on, their
    e-mail address (`_csm_users`). An optional column left blank keeps what the company has
    (`CompanyRow.given`); every value an update changes is listed in ``notes`` as
    "line N: <id>: field old → new".
    """
    summary = ImportSummary()
    changed: list[int] = []
    users, unknown = _csm_users({r.csm for r in rows if r.csm})
    with transaction.atomic():
        existing = Company.objects.in_bulk(
            [r.crm_account_id for r in rows], field_name="crm_account_id"
        )
        for row in rows:
            if row.csm and row.csm not in users:
                summary.errors.append(f"line {row.line}: csm {row.csm!r} {unknown[row.csm]}")
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
                summary.changes(row.line, row.crm_account_id, changes, target=company)
                changed.append(company.pk)  # a new CSM or segment changes what counts
            else:
                summary.unchanged += 1
        companies_changed(changed, since=None, reason="companies imported")
    return summary


def _csm_users(values: set[str]) -> tuple[dict[str, object], dict[str, str]]:
    """(CSM column value → user, value → why it names nobody).

    A username matches first, exactly; a value with an ``@`` that is no username matches the one
    user with that e-mail (`accounts.roles.users_with_email`: the rule single sign-on matches
    people by), so a CRM export that lists owners by e-mail needs no username mapping.
    """
    found = {u.username: u for u in get_user_model().objects.filter(username__in=values)}
    unknown: dict[str, str] = {}
    for value in values - found.keys():
        matches = list(users_with_email(value)[:2]) if "@" in value else []
        if len(matches) == 1:
            found[value] = matches[0]
        elif matches:
            unknown[value] = "is the e-mail of several users: name the CSM by username"
        elif "@" in value:
            unknown[value] = "is not a known username or user e-mail"
        else:
            unknown[value] = "is not a known username"
    return found, unknown


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
            summary.changes(row.line, row.name, changes, target=sub)
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
    """Record the CSM's sentiment with note, author and time (and in the audit trail: the
    account keeps only the latest), and refresh the scores."""
    before = {"sentiment": company.sentiment, "note": company.sentiment_note}
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
        audit_record(
            actor=by,
            action=AuditAction.SENTIMENT_SET,
            target=company,
            detail={"old": before, "new": {"sentiment": sentiment, "note": note}},
        )
        # Sentiment scores only the current card: monthly history has none.
        companies_changed([company.id], since=None, reason="sentiment")
    return company


def roi_set(*, company: Company, roi: str, note: str, by) -> Company:
    """Record the success plan's ROI (Outcomes) as the CSM judges it, and refresh the score."""
    before = {"roi": company.roi, "note": company.roi_note}
    company.roi, company.roi_note, company.roi_at = roi, note, timezone.now()
    with transaction.atomic():
        company.save(update_fields=["roi", "roi_note", "roi_at", "updated_at"])
        audit_record(
            actor=by,
            action=AuditAction.ROI_SET,
            target=company,
            detail={"old": before, "new": {"roi": roi, "note": note}},
        )
        companies_changed([company.id], since=None, reason="success-plan ROI")
    return company


# --------------------------------------------------------------------------------------------------
# Deleting a subscription


class SubscriptionInUse(Exception):
    """A subscription that instances, licenses or pings are mapped to: deleting it would unmap
    them silently (their foreign keys are SET_NULL), so it is refused. ``dependents`` says
    what depends on it, as "2 instances: a.example.com, b.example.com"."""

    def __init__(self, subscription: Subscription, dependents: list[str]) -> None:
        super().__init__(f"{subscription.name} is in use: {'; '.join(dependents)}")
        self.subscription = subscription
        self.dependents = dependents


#: How many of each kind of dependent a refusal names before it only counts.
DEPENDENTS_NAMED = 5


def subscription_dependents(subscription: Subscription) -> list[str]:
    """What is mapped to ``subscription`` — instances and licenses by name, pings counted —
    one line per kind; empty when it can be deleted without unmapping anything."""
    lines = []
    for what, rows in (
        ("instance", Instance.objects.filter(subscription=subscription).order_by("pk")),
        ("license", License.objects.filter(subscription=subscription).order_by("pk")),
    ):
        count = rows.count()
        if count:
            names = ", ".join(str(r) for r in rows[:DEPENDENTS_NAMED])
            more = f", and {count - DEPENDENTS_NAMED} more" if count > DEPENDENTS_NAMED else ""
            lines.append(f"{count} {what}{'s' if count != 1 else ''} mapped to it: {names}{more}")
    pings = UsagePing.objects.filter(subscription=subscription).count()
    if pings:
        lines.append(f"{pings} usage ping{'s' if pings != 1 else ''} mapped to it")
    return lines


def company_dependents(company: Company) -> list[str]:
    """What deleting ``company`` would unmap: its subscriptions' dependents (they go with it)
    and the instances filed under it, one line each; empty when nothing would be."""
    lines = [
        f"subscription {sub.name}: {line}"
        for sub in company.subscriptions.order_by("name")
        for line in subscription_dependents(sub)
    ]
    instances = Instance.objects.filter(company=company).exclude(subscription__company=company)
    count = instances.count()
    if count:
        lines.append(f"{count} instance{'s' if count != 1 else ''} filed under the account")
    return lines


def subscription_delete(*, subscription: Subscription, by) -> None:
    """Delete a subscription nothing is mapped to, recorded in the audit trail; one that
    instances, licenses or pings are mapped to raises ``SubscriptionInUse`` (map them
    elsewhere first). Checked under the subscription's row lock, in the delete's transaction."""
    with transaction.atomic():
        locked = Subscription.objects.select_for_update().get(pk=subscription.pk)
        dependents = subscription_dependents(locked)
        if dependents:
            raise SubscriptionInUse(locked, dependents)
        audit_record(
            actor=by,
            action=AuditAction.SUBSCRIPTION_DELETED,
            target=locked,
            detail={
                "name": locked.name,
                "company": locked.company.crm_account_id,
                "plan": locked.plan,
                "licensed_seats": locked.licensed_seats,
                "status": locked.status,
                "deployment": locked.deployment,
                "start_date": locked.start_date,
                "end_date": locked.end_date,
                "arr": locked.arr,
            },
        )
        company_id = locked.company_id
        locked.delete()
        companies_changed([company_id], reason="subscription deleted")
