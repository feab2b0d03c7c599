"""Label changes: recorded at once, applied after the refresh delay (product.md §4).

``label_change_request`` records an edit as *pending*; reports keep using the applied value until
``effective_at``. ``label_change_apply`` claims a pending change with one conditional UPDATE, so
the scheduled task, the beat sweep and ops' "apply now" can race without applying anything twice.
Each request, cancellation and apply is also an ``AuditEvent`` on the instance, in the same
transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.changes import companies_changed
from accounts.models import AuditAction
from usage_portal.celery import BROKER_ERRORS

from .models import (
    AppliedVia,
    HealthInclusion,
    Instance,
    InstanceType,
    LabelChange,
    LabelChangeStatus,
    LabelField,
)

FIELD_CHOICES = {
    LabelField.INSTANCE_TYPE: InstanceType,
    LabelField.HEALTH_INCLUSION: HealthInclusion,
}


logger = logging.getLogger(__name__)


def refresh_delay() -> timedelta:
    return settings.LABEL_REFRESH_DELAY


def label_change_request(
    *,
    instance: Instance,
    field: str,
    value: str,
    by=None,
    author: str = "",
    delay: timedelta | None = None,
    now: datetime | None = None,
    schedule: bool = True,
    defer_to_person: bool = False,
) -> LabelChange | None:
    """Record an edit of ``field`` on ``instance``; returns the change, or None if a no-op.

    A newer edit supersedes a pending one (and restarts the clock). An edit back to the applied
    value cancels the pending one and returns it, Cancelled with ``closed_at`` set: that row is
    the audit of the cancellation, and no from == to row is written. With ``defer_to_person``
    (labeling rules) nothing happens to an instance a person labeled or has an edit pending for.
    """
    choices = FIELD_CHOICES.get(field)
    if choices is None:
        raise ValidationError(f"{field!r} is not a label field")
    if value not in choices.values:
        raise ValidationError(f"{value!r} is not a valid {LabelField(field).label.lower()}")
    now = now or timezone.now()
    delay = refresh_delay() if delay is None else delay
    author = author or (by.get_username() if by is not None else "system")
    person = by if by is not None and getattr(by, "is_authenticated", False) else None

    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        applied = getattr(instance, field)
        pending = LabelChange.objects.pending().filter(instance=instance, field=field).first()
        if value == applied and pending is None:
            return None
        if defer_to_person and (
            instance.labeled_by_person or (pending is not None and pending.requested_by_id)
        ):
            return None  # rules never override a person, checked under the instance's lock
        if pending is not None and pending.new_value == value:
            return pending  # the same edit again changes nothing, nor restarts the clock
        if pending is not None and value == applied:
            # The pending row, closed as Cancelled, is the audit of the cancellation; a row
            # from the applied value to itself would read "Automatic → Automatic".
            pending.status, pending.closed_at = LabelChangeStatus.CANCELLED, now
            pending.save(update_fields=["status", "closed_at"])
            change = pending
            _audit(instance, change, AuditAction.LABEL_CANCELLED, by, author)
        else:
            if pending is not None:  # closed first: one pending change per field
                pending.status, pending.closed_at = LabelChangeStatus.SUPERSEDED, now
                pending.save(update_fields=["status", "closed_at"])
            change = LabelChange.objects.create(
                instance=instance,
                field=field,
                old_value=applied,
                new_value=value,
                requested_by=person,
                author=author[:150],
                requested_at=now,
                effective_at=now + delay,
            )
            if pending is not None:
                pending.superseded_by = change
                pending.save(update_fields=["superseded_by"])
            _audit(instance, change, AuditAction.LABEL_REQUESTED, by, author, superseded=pending)
            if schedule:
                _schedule(change)
        # Pages show pending edits at once; scores change only when one applies.
        companies_changed([instance.company_id], reason="label change requested", refresh=False)
    return change


#: A change due within this long gets its own task (ETA); a later one waits in the database for
#: the beat sweep. A day-long ETA message kept the broker's visibility timeout above a day, so a
#: worker killed mid-task left its message unacknowledged for 49 h.
SHORT_ETA = timedelta(minutes=30)


def _schedule(change: LabelChange) -> None:
    change_id, eta = change.id, change.effective_at
    if eta - change.requested_at > SHORT_ETA:
        return  # the sweep (every LABEL_SWEEP_SECONDS) applies it once due

    def publish() -> None:
        try:
            apply_label_change.apply_async((change_id,), eta=eta)
        except BROKER_ERRORS:  # the change is recorded; the sweep applies it
            logger.warning("could not queue label change %s; the sweep will apply it", change_id)

    transaction.on_commit(publish)


def label_change_apply(
    *,
    change_id: int,
    via: str,
    by=None,
    now: datetime | None = None,
    force: bool = False,
    refresh: bool = True,
) -> bool:
    """Apply one pending change if due (or ``force``: ops' apply-now); True if applied here.

    The company's scores are refreshed after commit unless ``refresh`` is off (bulk loaders
    that recompute everything at the end).
    """
    now = now or timezone.now()
    instance_id = (
        LabelChange.objects.filter(pk=change_id).values_list("instance_id", flat=True).first()
    )
    if instance_id is None:
        return False
    with transaction.atomic():
        # The instance's row lock first, as label_change_request takes it: one lock order, so a
        # request and an apply racing on one instance queue up instead of deadlocking.
        Instance.objects.select_for_update().filter(pk=instance_id).values_list("pk").first()
        due = LabelChange.objects.pending().filter(pk=change_id)
        if not force:
            due = due.filter(effective_at__lte=now)
        claimed = due.update(
            status=LabelChangeStatus.APPLIED,
            applied_at=now,
            applied_via=via,
            applied_by=by if by is not None and getattr(by, "is_authenticated", False) else None,
        )
        if not claimed:
            return False
        change = LabelChange.objects.select_related("instance").get(pk=change_id)
        updates = {change.field: change.new_value}
        if change.field == LabelField.INSTANCE_TYPE:
            updates["labeled_by_person"] = change.requested_by_id is not None or (
                change.instance.labeled_by_person
            )
        Instance.objects.filter(pk=change.instance_id).update(**updates)
        applied_now = via == AppliedVia.APPLY_NOW
        _audit(
            change.instance,
            change,
            AuditAction.LABEL_APPLIED_NOW if applied_now else AuditAction.LABEL_APPLIED,
            by,
            APPLIED_BY.get(via, "system"),
        )
        companies_changed(
            [change.instance.company_id], reason="label change applied", refresh=refresh
        )
    return True


#: Who applied a change when no person did, in the audit trail.
APPLIED_BY = {AppliedVia.SCHEDULE: "worker", AppliedVia.SWEEP: "worker", AppliedVia.SEED: "seed"}


def _audit(
    instance: Instance, change: LabelChange, action: str, by, label: str, superseded=None
) -> None:
    """The change's event in the audit trail, on its instance (inside the caller's atomic)."""
    detail = {
        "change": change.pk,
        "field": change.field,
        "old": change.old_value,
        "new": change.new_value,
        "status": change.status,
        "effective_at": change.effective_at,
    }
    if superseded is not None:
        detail["superseded"] = superseded.pk
    if change.applied_via:
        detail["via"] = change.applied_via
    audit_record(actor=by, actor_label=label, action=action, target=instance, detail=detail)


def label_changes_apply_due(*, now: datetime | None = None) -> int:
    """The sweep: apply every change whose effective time has passed. Returns how many."""
    now = now or timezone.now()
    ids = list(LabelChange.objects.due(now).order_by("effective_at").values_list("id", flat=True))
    return sum(label_change_apply(change_id=i, via="sweep", now=now) for i in ids)


# --------------------------------------------------------------------------------------------------
# Tasks: thin shells next to the service they run (registered through ``CELERY_IMPORTS``)

RETRY = {
    "autoretry_for": (OperationalError, IntegrityError),
    "max_retries": 3,
    "retry_backoff": True,
}


@shared_task(acks_late=True, **RETRY)
def apply_label_change(change_id: int) -> bool:
    """Scheduled for the change's effective time; a no-op if it was superseded or applied."""
    return label_change_apply(change_id=change_id, via="schedule")


@shared_task(acks_late=True, **RETRY)
def apply_due_label_changes() -> int:
    """The beat sweep: anything due that a lost or late task did not apply."""
    return label_changes_apply_due()
