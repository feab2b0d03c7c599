"""The audit trail's one writer: who did what to which record, and when (``AuditEvent``).

Every audited write calls ``audit_record`` (or ``audit_records`` for a batch) inside its own
``transaction.atomic()`` block, after the write it records: the event commits with the write
or not at all, so the trail never claims a change that rolled back, nor misses one that
committed. Events are only ever added (``AuditEvent`` refuses edits and deletes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from django.db import models

from accounts.models import AuditEvent

#: Who acted when no person did and the caller says nothing more precise.
SYSTEM = "system"


def audit_record(
    *, actor, action: str, target: models.Model, detail: dict | None = None, actor_label: str = ""
) -> AuditEvent:
    """Record that ``actor`` did ``action`` to ``target``; ``detail`` holds old/new values.

    ``actor`` is the person (anything not signed in counts as none); without one,
    ``actor_label`` names what acted ("import_crm", "worker", "rule: …"). Call it inside the
    write's transaction. ``target`` may be about to be deleted: only its name is kept.
    """
    event = _event(actor, action, target, detail, actor_label)
    event.save(force_insert=True)
    return event


def audit_records(
    *,
    actor,
    action: str,
    items: Iterable[tuple[models.Model, dict]],
    actor_label: str = "",
) -> list[AuditEvent]:
    """``audit_record`` for many targets of one action, in one query: (target, detail) pairs."""
    events = [_event(actor, action, target, detail, actor_label) for target, detail in items]
    return AuditEvent.objects.bulk_create(events) if events else []


def plain(value):
    """A value as the trail keeps it in ``detail``: JSON, readable without the database.

    A person is their username, any other record its text; dates and decimals their ISO text;
    lists, tuples and dicts are converted item by item.
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, models.Model):
        return getattr(value, "username", None) or str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _event(actor, action: str, target: models.Model, detail, actor_label: str) -> AuditEvent:
    person = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    label = person.get_username() if person is not None else (actor_label or SYSTEM)
    return AuditEvent(
        actor=person,
        actor_label=label[:150],
        action=action,
        target_type=target._meta.label_lower,
        target_id="" if target.pk is None else str(target.pk),
        target_repr=str(target)[:255],
        detail=plain(detail or {}),
    )
