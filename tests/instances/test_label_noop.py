"""Cancelling a pending label edit by choosing the applied value again writes no from == to row.

The pending change itself becomes Cancelled, with the time it was closed: that row is the audit
of the cancellation, and the label history reads "Automatic → Opt-Out, Cancelled".
"""

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from instances.labels import label_change_request, label_changes_apply_due
from instances.models import Instance, LabelChange
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(hours=24)

#: (field, applied value, pending value) for both label fields.
CANCELLATIONS = [
    ("health_inclusion", "", "opt_out"),
    ("instance_type", "unknown", "production"),
]


@pytest.mark.parametrize(("field", "applied", "pending_value"), CANCELLATIONS)
def test_choosing_the_applied_value_again_cancels_the_pending_change_without_a_new_row(
    csm, field, applied, pending_value
):
    instance = InstanceFactory(instance_type="unknown", health_inclusion="")
    t0 = timezone.now()
    pending = label_change_request(
        instance=instance, field=field, value=pending_value, by=csm, now=t0, delay=DAY
    )
    back = label_change_request(
        instance=instance, field=field, value=applied, by=csm, now=t0 + dt.timedelta(hours=2)
    )

    rows = list(LabelChange.objects.filter(instance=instance, field=field))
    assert [(r.old_value, r.new_value) for r in rows] == [(applied, pending_value)]
    assert not any(r.old_value == r.new_value for r in LabelChange.objects.all())
    pending.refresh_from_db()
    assert pending.status == "cancelled"
    assert pending.closed_at == t0 + dt.timedelta(hours=2)
    assert pending.superseded_by_id is None
    assert back is not None and back.pk == pending.pk and back.status == "cancelled"
    assert label_changes_apply_due(now=t0 + DAY * 2) == 0
    assert getattr(Instance.objects.get(pk=instance.pk), field) == applied


def test_choosing_the_applied_value_with_nothing_pending_still_records_nothing(csm):
    instance = InstanceFactory(health_inclusion="")
    assert (
        label_change_request(instance=instance, field="health_inclusion", value="", by=csm) is None
    )
    assert not LabelChange.objects.exists()


def test_label_history_reads_the_cancelled_opt_out_not_automatic_to_automatic(csm):
    company = CompanyFactory(csm=csm)
    sub = SubscriptionFactory(company=company)
    instance = InstanceFactory(company=company, subscription=sub, health_inclusion="")
    client = Client()
    client.force_login(csm)
    edit = reverse("instance_edit", args=[company.pk, instance.pk])
    client.post(edit, {"instance_type": "production", "health_inclusion": "opt_out"})
    client.post(edit, {"instance_type": "production", "health_inclusion": ""})

    html = client.get(reverse("account_instances", args=[company.pk])).content.decode()
    history = html[html.index("label-history") :]
    rows = re.findall(r"<tr>(.*?)</tr>", history, re.S)
    texts = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)) for row in rows]
    inclusion = [t for t in texts if "Included in health measure" in t]
    assert len(inclusion) == 1, texts
    assert "Automatic → Opt-Out" in inclusion[0] and "Cancelled" in inclusion[0]
    assert "Automatic → Automatic" not in html
