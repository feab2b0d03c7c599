"""The append-only audit trail (``AuditEvent``): what is recorded, by whom, in which transaction,
and that nothing edits or deletes it — not the ORM, not the admin, not (on PostgreSQL) raw SQL."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.audit import audit_record
from accounts.importers import CompanyRow
from accounts.models import AuditAction, AuditEvent, Company, ImmutableRecord
from accounts.services import companies_import, sentiment_set
from instances.labels import label_change_apply, label_change_request, label_changes_apply_due
from instances.models import Instance, LabelChange, License
from instances.services.licenses import license_map
from scoring.services import scheme_set
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


@pytest.fixture
def event(ops):
    company = CompanyFactory(name="Initech")
    return audit_record(
        actor=ops,
        action=AuditAction.SENTIMENT_SET,
        target=company,
        detail={"old": {"sentiment": ""}, "new": {"sentiment": "Red"}},
    )


# --------------------------------------------------------------------------------------------------
# Append-only


def test_an_event_names_who_what_and_when(event, ops):
    assert (event.actor, event.actor_label) == (ops, "ops_user")
    assert (event.target_type, event.target_repr) == ("accounts.company", "Initech")
    assert event.target_id == str(Company.objects.get(name="Initech").pk)
    assert abs(event.at - timezone.now()) < timedelta(minutes=1)
    assert AuditEvent.objects.get().detail["new"] == {"sentiment": "Red"}


def test_without_a_person_the_event_says_what_acted(db):
    event = audit_record(
        actor=None, actor_label="worker", action=AuditAction.LABEL_APPLIED, target=CompanyFactory()
    )
    assert (event.actor, event.actor_label) == (None, "worker")


@pytest.mark.parametrize(
    "attempt",
    [
        lambda e: e.save(),
        lambda e: e.delete(),
        lambda e: AuditEvent.objects.filter(pk=e.pk).update(action="roi_set"),
        lambda e: AuditEvent.objects.filter(pk=e.pk).delete(),
        lambda e: AuditEvent.objects.all().delete(),
        lambda e: AuditEvent.objects.bulk_update([e], ["action"]),
        lambda e: AuditEvent.objects.update_or_create(pk=e.pk, defaults={"action": "roi_set"}),
    ],
    ids=[
        "save",
        "delete",
        "qs-update",
        "qs-delete",
        "delete-all",
        "bulk_update",
        "update_or_create",
    ],
)
def test_an_event_is_never_edited_or_deleted(event, attempt):
    before = list(AuditEvent.objects.values())
    event.action = AuditAction.ROI_SET
    with pytest.raises(ImmutableRecord), transaction.atomic():
        attempt(event)
    assert list(AuditEvent.objects.values()) == before


def test_a_person_in_the_trail_is_deactivated_not_deleted(event, ops):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        ops.delete()
    assert AuditEvent.objects.get().actor == ops


@pytest.mark.integration
def test_postgresql_refuses_raw_updates_and_deletes(event):
    """The trigger: SQL that never meets the model is refused by the database itself."""
    table = AuditEvent._meta.db_table
    for sql in (f"UPDATE {table} SET action = 'roi_set'", f"DELETE FROM {table}"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
    assert AuditEvent.objects.get().action == AuditAction.SENTIMENT_SET


# --------------------------------------------------------------------------------------------------
# The admin: read-only, for ops


def test_ops_reads_the_trail_in_the_admin_with_filters_and_search(client, ops, event):
    audit_record(
        actor=None,
        actor_label="import_crm",
        action=AuditAction.CRM_IMPORT_CHANGED,
        target=CompanyFactory(name="Globex"),
    )
    client.force_login(ops)

    def shown(query: str = "") -> set[str]:
        response = client.get(f"/admin/accounts/auditevent/{query}")
        assert response.status_code == 200
        page = response.content.decode()
        return {name for name in ("Initech", "Globex") if name in page}

    assert shown() == {"Initech", "Globex"}
    assert shown("?action__exact=sentiment_set") == {"Initech"}
    assert shown("?actor=import_crm") == {"Globex"}
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = midnight + timedelta(days=1)
    assert shown("?" + urlencode({"at__gte": midnight, "at__lt": tomorrow})) == {
        "Initech",
        "Globex",
    }
    assert shown("?" + urlencode({"at__gte": tomorrow})) == set()
    assert shown("?q=Initech") == {"Initech"}
    detail = client.get(f"/admin/accounts/auditevent/{event.pk}/change/").content.decode()
    assert "&quot;Red&quot;" in detail and 'name="action"' not in detail  # read-only view


def test_nobody_adds_edits_or_deletes_an_event_in_the_admin(client, ops, event):
    client.force_login(ops)
    before = list(AuditEvent.objects.values())
    assert client.get("/admin/accounts/auditevent/add/").status_code == 403
    assert (
        client.post(f"/admin/accounts/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    client.post(f"/admin/accounts/auditevent/{event.pk}/change/", {"action": "roi_set"})
    client.post(
        "/admin/accounts/auditevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert list(AuditEvent.objects.values()) == before


# --------------------------------------------------------------------------------------------------
# What is recorded


def test_sentiment_keeps_its_history_in_the_trail(client, csm):
    company = CompanyFactory(csm=csm)
    client.force_login(csm)
    url = reverse("account_sentiment", kwargs={"pk": company.pk})
    client.post(url, {"sentiment": "Yellow", "note": "quiet"})
    client.post(url, {"sentiment": "Red", "note": "renewal at risk"})

    first, second = events(AuditAction.SENTIMENT_SET)
    assert (first.actor, second.actor) == (csm, csm)
    assert first.detail == {
        "old": {"sentiment": "", "note": ""},
        "new": {"sentiment": "Yellow", "note": "quiet"},
    }
    assert second.detail["old"] == {"sentiment": "Yellow", "note": "quiet"}
    assert second.detail["new"] == {"sentiment": "Red", "note": "renewal at risk"}
    assert second.target_id == str(company.pk)


def test_the_event_is_written_in_the_writes_transaction(csm, monkeypatch):
    """When the trail cannot be written, the write it records does not happen either."""
    company = CompanyFactory(csm=csm)

    def broken(**kwargs):
        raise DatabaseError("audit table unavailable")

    monkeypatch.setattr(account_services, "audit_record", broken)
    with pytest.raises(DatabaseError):
        sentiment_set(company=company, sentiment="Red", note="x", by=csm)
    assert Company.objects.get(pk=company.pk).sentiment == ""


def test_a_write_that_rolls_back_leaves_no_event(csm):
    company = CompanyFactory(csm=csm)
    with pytest.raises(RuntimeError), transaction.atomic():
        sentiment_set(company=company, sentiment="Red", note="x", by=csm)
        raise RuntimeError("the caller's transaction fails after the write")
    assert not AuditEvent.objects.exists()


def test_label_request_cancel_and_apply_are_recorded(ops, csm):
    inst = InstanceFactory(instance_type="unknown", subscription__company__csm=csm)
    change = label_change_request(instance=inst, field="instance_type", value="production", by=csm)
    label_change_request(instance=inst, field="instance_type", value="unknown", by=csm)  # cancels
    again = label_change_request(instance=inst, field="instance_type", value="obsolete", by=csm)
    assert label_change_apply(change_id=again.pk, via="apply_now", by=ops, force=True)

    (requested, requested_again) = events(AuditAction.LABEL_REQUESTED)
    (cancelled,) = events(AuditAction.LABEL_CANCELLED)
    (applied_now,) = events(AuditAction.LABEL_APPLIED_NOW)
    assert requested.actor == csm and requested.target_id == str(inst.pk)
    assert (requested.detail["change"], requested.detail["old"], requested.detail["new"]) == (
        change.pk,
        "unknown",
        "production",
    )
    assert cancelled.detail["change"] == change.pk and cancelled.detail["status"] == "cancelled"
    assert requested_again.detail["new"] == "obsolete"
    assert applied_now.actor == ops and applied_now.detail["via"] == "apply_now"
    assert applied_now.target_type == "instances.instance"


def test_apply_now_through_the_c360_page_is_recorded(client, ops):
    inst = InstanceFactory(instance_type="unknown")
    change = label_change_request(instance=inst, field="instance_type", value="production", by=ops)
    client.force_login(ops)
    client.post(reverse("label_apply_now", kwargs={"change_id": change.pk}))
    assert Instance.objects.get(pk=inst.pk).instance_type == "production"
    (event,) = events(AuditAction.LABEL_APPLIED_NOW)
    assert event.actor == ops and event.detail["change"] == change.pk


def test_a_change_applied_by_the_worker_names_the_worker(csm):
    inst = InstanceFactory(instance_type="unknown")
    label_change_request(
        instance=inst, field="instance_type", value="production", by=csm, delay=timedelta(0)
    )
    assert label_changes_apply_due(now=timezone.now() + timedelta(seconds=1)) == 1
    (event,) = events(AuditAction.LABEL_APPLIED)
    assert (event.actor, event.actor_label, event.detail["via"]) == (None, "worker", "sweep")


def test_a_label_request_that_changes_nothing_records_nothing(csm):
    inst = InstanceFactory(instance_type="production")
    assert label_change_request(instance=inst, field="instance_type", value="production") is None
    assert not AuditEvent.objects.exists()


def test_license_mappings_are_recorded_by_hand_and_from_pings(ops):
    by_ping = store_ping(
        "u-mapped",
        days_ago=1,
        license_md5="d" * 32,
        version="15.4.0-ee",  # a release that sends the license md5
        subscription=SubscriptionFactory(),
        refresh=False,
    )
    (from_ping,) = events(AuditAction.LICENSE_MAPPED)
    assert (from_ping.actor, from_ping.actor_label) == (None, "ingest")
    assert from_ping.target_id == str(by_ping.license_id)

    sub = SubscriptionFactory(name="A-S00000777")
    ping = store_ping(
        "u-unmapped", days_ago=1, license_md5="e" * 32, version="15.4.0-ee", refresh=False
    )
    license_map(
        license=License.objects.get(pk=ping.license_id), subscription=sub, by=ops, via="manual"
    )
    by_hand = events(AuditAction.LICENSE_MAPPED)[-1]
    assert by_hand.actor == ops
    assert by_hand.detail == {"from": None, "to": "A-S00000777", "via": "manual"}
    assert LabelChange.objects.count() == 0  # nothing else is written in passing


def test_crm_import_changes_are_recorded_and_still_logged(csm, other_csm, caplog):
    company = CompanyFactory(crm_account_id="0016100000000001", name="Acme", csm=csm)
    row = CompanyRow(
        line=2,
        crm_account_id="0016100000000001",
        name="Acme Robotics",
        segment="Strategic",
        csm="other_csm",
        customer_since=company.customer_since,
    )
    with caplog.at_level(logging.INFO, logger="usage_portal.audit"):
        companies_import(rows=[row])

    (event,) = events(AuditAction.CRM_IMPORT_CHANGED)
    assert (event.actor, event.actor_label) == (None, "import_crm")
    assert event.target_id == str(company.pk)
    assert event.detail == {
        "line": 2,
        "changes": {"name": ["Acme", "Acme Robotics"], "csm": ["csm_user", "other_csm"]},
    }
    assert any("CRM import changed line 2" in r.getMessage() for r in caplog.records)


def test_a_scheme_switch_is_recorded(ops):
    scheme_set(name="gitlab-dbt-2024", by=ops, rebuild_history=False)
    (event,) = events(AuditAction.SCHEME_SWITCHED)
    assert event.actor == ops
    assert event.detail == {
        "from": "gitlab-handbook-2025",
        "to": "gitlab-dbt-2024",
        "rebuild_history": False,
    }
