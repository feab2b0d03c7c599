"""Health-drop alerts: raised once, updated on a further drop, closed on recovery or by a CSM,
never on accounts a CSM does not own, and one digest e-mail per CSM and day."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company
from scoring.alerts import AlertClosed, alert_close, drop_digests_send
from scoring.drops import has_recovered, is_drop, moves
from scoring.models import DigestSent, HealthAlert, ScoreSnapshot
from scoring.services import companies_refresh, scheme_set
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.web.test_c360_views import _client, _html

# LU on a 400-day-old account: above 75 % Green, 75 % or less Red (methodology §5).
GREEN, RED = 90, 60


@pytest.mark.parametrize(
    ("before", "after", "drop"),
    [
        ("Green", "Yellow", True),
        ("Green", "Red", True),
        ("Yellow", "Red", True),
        ("Yellow", "Green", False),
        ("Red", "Red", False),
        ("Green", "NA", False),
        ("NA", "Red", False),
        (None, "Red", False),
    ],
)
def test_what_counts_as_a_drop(before, after, drop):
    assert is_drop(before, after) is drop


def test_recovery_is_back_at_the_colour_it_fell_from():
    assert has_recovered("Yellow", "Yellow") and has_recovered("Yellow", "Green")
    assert not has_recovered("Green", "Yellow") and not has_recovered("Green", "NA")


def test_moves_name_only_the_watched_measures_that_changed():
    before = {"scm_color": "Green", "ci_color": "Red", "overall_color": "Green"}
    after = {"scm_color": "Yellow", "ci_color": "Red", "overall_color": "Red"}
    assert [(m.measure, m.before, m.after) for m in moves(before, after)] == [
        ("scm", "Green", "Yellow")
    ]


def csm_owned_instance(csm, *, name: str | None = None):
    """An instance of a 400-day-old Strategic account ``csm`` owns, scored Green on LU."""
    sub = SubscriptionFactory(licensed_seats=100, **({"company__name": name} if name else {}))
    Company.objects.filter(pk=sub.company_id).update(
        csm=csm, segment="Strategic", customer_since=timezone.now().date() - dt.timedelta(days=400)
    )
    instance = InstanceFactory(subscription=sub, company=sub.company)
    ping_scored(instance, GREEN, days_ago=3)
    return instance


@pytest.fixture
def owned(db, csm):
    return csm_owned_instance(csm)


def ping_scored(instance, billable: int, *, days_ago: float) -> None:
    store_ping(
        instance,
        recorded_at=timezone.now() - dt.timedelta(days=days_ago),
        metrics={"billable_users": billable},
        refresh=False,
    )
    companies_refresh(company_ids=[instance.company_id], history=False)


def _lu_alerts(instance):
    return list(
        HealthAlert.objects.filter(company_id=instance.company_id, measure="license_utilization")
    )


def test_a_drop_raises_one_alert_with_the_score_that_dropped(owned):
    ping_scored(owned, RED, days_ago=2)
    (alert,) = _lu_alerts(owned)
    assert (alert.status, alert.from_color, alert.to_color) == ("open", "Green", "Red")
    current = ScoreSnapshot.objects.get(company_id=owned.company_id, is_current=True)
    assert alert.snapshot_id == current.pk
    assert [e.kind for e in alert.events.all()] == ["raised"]
    ping_scored(owned, RED - 5, days_ago=1)  # still Red: nothing new
    assert len(_lu_alerts(owned)) == 1 and _lu_alerts(owned)[0].events.count() == 1


def test_a_further_drop_updates_the_open_alert(owned):
    Company.objects.filter(pk=owned.company_id).update(
        customer_since=timezone.now().date() - dt.timedelta(days=200)  # 6–9 months: 3 colours
    )
    ping_scored(owned, 70, days_ago=2.5)  # > 50 % – 75 %: Yellow
    (alert,) = _lu_alerts(owned)
    assert (alert.from_color, alert.to_color) == ("Green", "Yellow")
    ping_scored(owned, 40, days_ago=2)  # ≤ 50 %: Red
    (alert,) = _lu_alerts(owned)
    assert (alert.status, alert.from_color, alert.to_color) == ("open", "Green", "Red")
    assert [e.kind for e in alert.events.all()] == ["raised", "worsened"]


def test_a_recovery_closes_the_alert_by_itself_with_the_reason(owned):
    ping_scored(owned, RED, days_ago=2)
    ping_scored(owned, GREEN + 5, days_ago=1)
    (alert,) = _lu_alerts(owned)
    assert (alert.status, alert.close_reason) == ("closed", "recovered to Green")
    assert [e.kind for e in alert.events.all()] == ["raised", "recovered"]
    ping_scored(owned, RED, days_ago=0.5)  # a new drop: a new alert, the closed one stays closed
    assert [a.status for a in _lu_alerts(owned)] == ["closed", "open"]


@pytest.mark.parametrize("segment, has_csm", [("Scale", True), ("Strategic", False)])
def test_accounts_a_csm_does_not_own_get_no_alert(owned, segment, has_csm):
    Company.objects.filter(pk=owned.company_id).update(
        segment=segment, **({} if has_csm else {"csm": None})
    )
    ping_scored(owned, RED, days_ago=2)
    assert _lu_alerts(owned) == []


def test_a_change_of_rules_is_not_a_drop(owned, ops):
    ping_scored(owned, 80, days_ago=2)  # Green under both presets' LU table
    scheme_set(name="gitlab-dbt-2024", by=ops, rebuild_history=False)
    assert not HealthAlert.objects.filter(company_id=owned.company_id).exists()


def test_a_csm_closes_a_drop_with_a_note_and_the_trail_says_who(owned, csm):
    ping_scored(owned, RED, days_ago=2)
    (alert,) = _lu_alerts(owned)
    alert_close(alert_id=alert.pk, by=csm, note="seats cut at renewal, expected")
    alert.refresh_from_db()
    assert alert.status == "closed" and alert.closed_by == csm
    assert alert.close_reason == f"closed by {csm.username}: seats cut at renewal, expected"
    last = alert.events.last()
    assert (last.kind, last.by, last.note) == ("closed", csm, "seats cut at renewal, expected")
    with pytest.raises(AlertClosed):
        alert_close(alert_id=alert.pk, by=csm, note="again")


# --------------------------------------------------------------------------------------------------
# The worklist, the badge and closing from the browser's form


def test_the_worklist_shows_a_csm_their_open_drops_and_ops_every_one(owned, csm, other_csm, ops):
    ping_scored(owned, RED, days_ago=2)
    url = reverse("alerts")
    name = owned.company.name
    assert name in _html(_client(csm).get(url))
    assert name not in _html(_client(other_csm).get(url))  # not theirs: "my accounts"
    assert name in _html(_client(other_csm).get(url + "?who=all"))
    assert name in _html(_client(ops).get(url))
    assert name not in _html(_client(ops).get(url + "?measure=scm"))
    assert name in _html(_client(ops).get(url + "?measure=license_utilization"))
    assert name not in _html(_client(ops).get(url + "?age=7"))  # raised today


def test_the_c360_header_carries_a_badge_of_open_drops(owned, viewer):
    page = reverse("account_summary", args=[owned.company_id])
    assert 'data-testid="drop-badge"' not in _html(_client(viewer).get(page))
    ping_scored(owned, RED, days_ago=2)
    html = _html(_client(viewer).get(page))
    assert 'data-testid="drop-badge"' in html
    assert '<span class="pill pill-Red">1</span> open health drop</a>' in html


def test_closing_from_the_worklist_needs_the_right_person_and_a_note(owned, csm, other_csm):
    ping_scored(owned, RED, days_ago=2)
    (alert,) = _lu_alerts(owned)
    url = reverse("alert_close", args=[alert.pk])
    assert _client(other_csm).post(url, {"note": "not mine"}).status_code == 403
    _client(csm).post(url, {"note": "   "})
    alert.refresh_from_db()
    assert alert.status == "open"  # a note is required
    response = _client(csm).post(url, {"note": "talked to the champion", "next": "/alerts/"})
    assert response.status_code == 302 and response["Location"] == "/alerts/"
    alert.refresh_from_db()
    assert alert.status == "closed" and "talked to the champion" in alert.close_reason


# --------------------------------------------------------------------------------------------------
# The daily digest


def test_the_digest_is_sent_once_a_day_per_csm(owned, csm, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    csm.email = "csm@example.com"
    csm.save()
    ping_scored(owned, RED, days_ago=2)
    today = timezone.localdate()
    assert drop_digests_send(day=today) == 1
    assert drop_digests_send(day=today) == 0  # beat ran twice: nothing more
    (message,) = mail.outbox
    assert message.to == [csm.email]
    assert owned.company.name in message.body and "License Utilization Green → Red" in message.body
    assert DigestSent.objects.get(user=csm, day=today).alerts == 1
    # Tomorrow: only drops not in a digest yet; none, so no e-mail.
    assert drop_digests_send(day=today + dt.timedelta(days=1)) == 0
    assert len(mail.outbox) == 1
