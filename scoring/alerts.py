"""Health-drop alerts: raised, updated and closed with the scores, and the daily digest.

``alerts_follow`` runs inside the scoring transaction that stores new snapshots, so an alert
exists the moment the score that dropped does (seconds after the ping that caused it), and
never without it. One open alert per account and measure: a further drop updates it, a
recovery to the colour it dropped from closes it with the reason. Only CSM-owned accounts are
alerted (``accounts.models.csm_owned_q``); a change of rules (another scheme label) is not a
drop. Every step is an ``HealthAlertEvent``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company, csm_owned_q

from .drops import DROP_MEASURES, has_recovered, is_drop, moves
from .models import AlertStatus, DigestSent, HealthAlert, HealthAlertEvent, ScoreSnapshot

logger = logging.getLogger(__name__)
#: What ``alerts_follow`` needs of the score each new one replaces.
PREVIOUS_FIELDS = ("company_id", "scheme", *DROP_MEASURES.values())


def alerts_follow(*, previous: Mapping[int, dict], written: Sequence[ScoreSnapshot]) -> int:
    """Raise, update or close alerts for the scores just stored; returns alerts touched.

    ``previous`` maps a company id to the replaced current score's ``PREVIOUS_FIELDS``.
    Runs in the caller's transaction (the company rows are locked there).
    """
    pairs = [(s, previous[s.company_id]) for s in written if s.company_id in previous]
    if not pairs:
        return 0
    ids = [s.company_id for s, _ in pairs]
    owned = set(Company.objects.filter(csm_owned_q(), id__in=ids).values_list("id", flat=True))
    open_alerts = {
        (a.company_id, a.measure): a
        for a in HealthAlert.objects.filter(company_id__in=ids, status=AlertStatus.OPEN)
    }
    now = timezone.now()
    touched = 0
    for snapshot, before in pairs:
        if before["scheme"] != snapshot.scheme:
            continue  # new rules, not a change in the customer's usage
        after = {column: getattr(snapshot, column) for column in DROP_MEASURES.values()}
        for move in moves(before, after):
            alert = open_alerts.get((snapshot.company_id, move.measure))
            if alert is not None:
                touched += _follow(alert, move.after, snapshot, now)
            elif is_drop(move.before, move.after) and snapshot.company_id in owned:
                alert = HealthAlert.objects.create(
                    company_id=snapshot.company_id,
                    measure=move.measure,
                    from_color=move.before,
                    to_color=move.after,
                    raised_at=now,
                    updated_at=now,
                    snapshot=snapshot,
                )
                _event(alert, "raised", move.before, move.after, now)
                touched += 1
    return touched


def _follow(alert: HealthAlert, color: str | None, snapshot: ScoreSnapshot, now) -> int:
    if has_recovered(alert.from_color, color):
        alert.status, alert.closed_at = AlertStatus.CLOSED, now
        alert.close_reason = f"recovered to {color}"
        kind = "recovered"
    elif is_drop(alert.to_color, color):
        kind = "worsened"
    elif color in ("Red", "Yellow", "Green"):
        kind = "improved"  # better, not yet back where it was
    else:
        return 0  # NA: nothing known either way
    _event(alert, kind, alert.to_color, color, now)
    alert.to_color, alert.updated_at, alert.snapshot = color, now, snapshot
    alert.save()
    return 1


def _event(alert: HealthAlert, kind: str, before, after, now, *, by=None, note: str = "") -> None:
    HealthAlertEvent.objects.create(
        alert=alert,
        kind=kind,
        from_color=before or "",
        to_color=after or "",
        at=now,
        by=by,
        note=note,
    )


class AlertClosed(Exception):
    """The alert was closed already (by its recovery, or by someone else)."""


def alert_close(*, alert_id: int, by, note: str) -> HealthAlert:
    """A CSM closes an open alert with a note (who may is the caller's check)."""
    with transaction.atomic():
        alert = HealthAlert.objects.select_for_update().get(pk=alert_id)
        if alert.status != AlertStatus.OPEN:
            raise AlertClosed(alert.close_reason or "closed")
        now = timezone.now()
        alert.status, alert.closed_at, alert.closed_by = AlertStatus.CLOSED, now, by
        alert.close_reason = f"closed by {by.get_username()}: {note}"[:500]
        alert.save()
        _event(alert, "closed", alert.to_color, alert.to_color, now, by=by, note=note[:500])
    return alert


def drop_digests_send(*, day: date | None = None) -> int:
    """E-mail each CSM the drops raised on their accounts not yet in a digest; once a day.

    Idempotent per CSM and day (``DigestSent``): a second run that day sends nothing. Returns
    the number of e-mails sent.
    """
    day = day or timezone.localdate()
    pending = (
        HealthAlert.objects.filter(
            status=AlertStatus.OPEN, digested_on__isnull=True, company__csm__isnull=False
        )
        .select_related("company")
        .order_by("company__name", "measure")
    )
    by_csm: dict[int, list[HealthAlert]] = {}
    for alert in pending:
        by_csm.setdefault(alert.company.csm_id, []).append(alert)
    users = get_user_model().objects.in_bulk(by_csm)
    sent = 0
    for user_id, alerts in by_csm.items():
        user = users[user_id]
        if not user.email:
            continue
        with transaction.atomic():
            _, created = DigestSent.objects.get_or_create(
                user=user, day=day, defaults={"alerts": len(alerts)}
            )
            if not created:
                continue
            HealthAlert.objects.filter(pk__in=[a.pk for a in alerts]).update(digested_on=day)
            context = {
                "user": user,
                "alerts": alerts,
                "day": day,
                "worklist_url": settings.PORTAL_URL + reverse("alerts"),
            }
            send_mail(
                subject=f"Usage Portal: {len(alerts)} health drop(s) on your accounts",
                message=render_to_string("scoring/drop_digest.txt", context),
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=[user.email],
            )
            sent += 1
    return sent
