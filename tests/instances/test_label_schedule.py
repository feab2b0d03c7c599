"""Due label changes wait in the database; only a change due soon gets a task with an ETA.

A 24-hour ETA message forced the broker's visibility timeout above a day, so a worker killed
mid-task left its message unacknowledged for 49 h. Now a change due later than SHORT_ETA is
applied by the beat sweep, and the visibility timeout is an hour.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from instances import labels
from instances.labels import SHORT_ETA, label_change_request, label_changes_apply_due
from instances.models import Instance
from tests.factories import InstanceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    calls = []
    monkeypatch.setattr(
        labels.apply_label_change, "apply_async", lambda args, eta: calls.append((args, eta))
    )
    return calls


def test_a_day_long_change_publishes_nothing_and_the_sweep_applies_it(
    published, csm, django_capture_on_commit_callbacks
):
    inst = InstanceFactory(instance_type="unknown")
    with django_capture_on_commit_callbacks(execute=True):
        change = label_change_request(
            instance=inst, field="instance_type", value="production", by=csm
        )

    assert published == []
    assert label_changes_apply_due(now=change.effective_at - timedelta(seconds=1)) == 0
    assert label_changes_apply_due(now=change.effective_at + timedelta(seconds=1)) == 1
    assert Instance.objects.get(pk=inst.pk).instance_type == "production"


def test_a_change_due_soon_gets_its_own_task(published, csm, django_capture_on_commit_callbacks):
    inst = InstanceFactory(instance_type="unknown")
    with django_capture_on_commit_callbacks(execute=True):
        change = label_change_request(
            instance=inst, field="instance_type", value="production", by=csm, delay=SHORT_ETA
        )

    assert published == [((change.id,), change.effective_at)]


def test_a_broker_that_is_down_does_not_fail_the_request(
    monkeypatch, csm, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(labels.apply_label_change, "apply_async", refuse)
    inst = InstanceFactory(instance_type="unknown")
    with django_capture_on_commit_callbacks(execute=True):
        change = label_change_request(
            instance=inst, field="instance_type", value="production", by=csm, delay=timedelta(0)
        )

    assert change.is_pending
    assert label_changes_apply_due() == 1


def test_the_visibility_timeout_is_back_to_an_hour_with_redis(monkeypatch):
    from tests.test_settings import run_django

    result = run_django(
        "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
        DEBUG="1",
        REDIS_URL="redis://127.0.0.1:6379/15",
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) == 3600 < settings.LABEL_REFRESH_DELAY.total_seconds()
