"""The refresh delay (product.md §4): pending at once, applied at the effective time, once."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from instances.labels import (
    label_change_apply,
    label_change_request,
    label_changes_apply_due,
)
from instances.models import Instance, LabelChange
from scoring.models import ScoreSnapshot
from tests.factories import InstanceFactory, store_ping

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(hours=24)


@pytest.fixture
def unknown():
    return InstanceFactory(instance_type="unknown")


def test_edit_is_pending_with_effective_time_and_reports_keep_the_applied_value(unknown, csm):
    now = timezone.now()
    change = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, now=now, delay=DAY
    )
    assert change.status == "pending" and change.effective_at == now + DAY
    assert change.old_value == "unknown" and change.author == "csm_user"
    unknown.refresh_from_db()
    assert unknown.instance_type == "unknown"


def test_change_applies_only_once_and_only_when_due(unknown, csm):
    now = timezone.now()
    change = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, now=now, delay=DAY
    )
    assert not label_change_apply(change_id=change.id, via="schedule", now=now + DAY / 2)
    assert Instance.objects.get(pk=unknown.pk).instance_type == "unknown"
    assert label_change_apply(change_id=change.id, via="schedule", now=now + DAY)
    assert not label_change_apply(change_id=change.id, via="sweep", now=now + DAY * 2)
    change.refresh_from_db()
    assert change.status == "applied" and change.applied_via == "schedule"
    unknown.refresh_from_db()
    assert unknown.instance_type == "production" and unknown.labeled_by_person


def test_newer_edit_supersedes_and_restarts_the_clock(unknown, csm):
    t0 = timezone.now()
    first = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, now=t0, delay=DAY
    )
    t1 = t0 + dt.timedelta(hours=5)
    second = label_change_request(
        instance=unknown, field="instance_type", value="obsolete", by=csm, now=t1, delay=DAY
    )
    first.refresh_from_db()
    assert first.status == "superseded" and first.superseded_by_id == second.id
    assert second.effective_at == t1 + DAY
    assert not label_change_apply(change_id=first.id, via="schedule", now=t1 + DAY * 3)
    assert label_changes_apply_due(now=t1 + DAY) == 1
    assert Instance.objects.get(pk=unknown.pk).instance_type == "obsolete"


def test_edit_back_to_the_applied_value_cancels_the_pending_one(unknown, csm):
    pending = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, delay=DAY
    )
    back = label_change_request(instance=unknown, field="instance_type", value="unknown", by=csm)
    pending.refresh_from_db()
    assert pending.status == "cancelled" and back.status == "cancelled"
    assert LabelChange.objects.pending().count() == 0
    assert label_changes_apply_due(now=timezone.now() + DAY * 2) == 0
    assert Instance.objects.get(pk=unknown.pk).instance_type == "unknown"


def test_repeating_the_same_edit_keeps_the_clock(unknown, csm):
    t0 = timezone.now()
    first = label_change_request(
        instance=unknown, field="instance_type", value="production", by=csm, now=t0, delay=DAY
    )
    again = label_change_request(
        instance=unknown,
        field="instance_type",
        value="production",
        by=csm,
        now=t0 + dt.timedelta(hours=3),
        delay=DAY,
    )
    assert again.pk == first.pk and again.effective_at == t0 + DAY


def test_no_op_edit_records_nothing(unknown, csm):
    assert (
        label_change_request(instance=unknown, field="instance_type", value="unknown", by=csm)
        is None
    )
    assert LabelChange.objects.count() == 0


def test_ops_apply_now_is_recorded(unknown, csm, ops):
    change = label_change_request(
        instance=unknown, field="health_inclusion", value="opt_out", by=csm, delay=DAY
    )
    assert label_change_apply(change_id=change.id, via="apply_now", by=ops, force=True)
    change.refresh_from_db()
    assert change.applied_by == ops and change.applied_via == "apply_now"
    assert Instance.objects.get(pk=unknown.pk).health_inclusion == "opt_out"


def test_invalid_value_is_refused(unknown, csm):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        label_change_request(instance=unknown, field="instance_type", value="staging", by=csm)


def test_scores_follow_the_applied_label_not_the_pending_one(
    unknown, csm, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        store_ping(unknown, days_ago=2, metrics={"billable_users": 50})
    snap = ScoreSnapshot.objects.get(company=unknown.company, is_current=True)
    assert snap.license_utilization_color == "NA"  # no Production instance yet
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        change = label_change_request(
            instance=unknown,
            field="instance_type",
            value="production",
            by=csm,
            now=now,
            delay=DAY,
        )
    snap = ScoreSnapshot.objects.get(company=unknown.company, is_current=True)
    assert snap.license_utilization is None
    # The sweep at the effective time applies it and (eagerly here) recomputes.
    with django_capture_on_commit_callbacks(execute=True):
        assert label_changes_apply_due(now=now + DAY) == 1
    snap = ScoreSnapshot.objects.get(company=unknown.company, is_current=True)
    assert snap.license_utilization == pytest.approx(0.5)
    assert LabelChange.objects.get(pk=change.pk).applied_via == "sweep"


def test_apply_due_command_runs_the_same_sweep(unknown, csm):
    label_change_request(
        instance=unknown,
        field="instance_type",
        value="production",
        by=csm,
        now=timezone.now() - DAY * 2,
        delay=DAY,
    )
    from io import StringIO

    out = StringIO()
    call_command("apply_due_label_changes", stdout=out)
    assert "Applied 1 due label change" in out.getvalue()
    assert Instance.objects.get(pk=unknown.pk).instance_type == "production"


def test_rule_edit_defers_to_a_person_under_the_lock(unknown, csm):
    label_change_request(instance=unknown, field="instance_type", value="obsolete", by=csm)
    assert (
        label_change_request(
            instance=unknown,
            field="instance_type",
            value="production",
            author="rule: x",
            defer_to_person=True,
        )
        is None
    )
    assert LabelChange.objects.pending().get().author == "csm_user"
