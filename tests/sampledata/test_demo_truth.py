"""The demo tells the truth: about time, about who labeled what, and about what came before.

Issue 14: a seeded or generated ping is never later than now, nor earlier than the account's
first day as a customer; ``make demo`` run again (that day or a later one) changes nothing; label
history is the demo's own (or a labeling rule's), never a real user's; every labeling rule has
labeled something; Unknown instances wait on every CSM's accounts; and the Summary shows trends
against an earlier score from the first view.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Max
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company
from instances.models import Instance, LabelChange, UsagePing
from instances.rules import SAAS_RULE, SINGLE_INSTANCE_RULE, UTILIZATION_RULE
from scoring.models import ScoreSnapshot
from scoring.scorecard import Scorecard
from scoring.services import current_scorecard
from usage_portal.sampledata import demo
from usage_portal.sampledata.demo import DEMO_CSMS, build_book, iter_ping_kwargs, iter_saas_rows
from usage_portal.sampledata.loadgen import build_load_book
from usage_portal.sampledata.seed import SEED_AUTHOR
from usage_portal.web.c360 import selectors, viewmodels

SMALL = {"companies": 12, "weeks": 20}
RULES = (UTILIZATION_RULE, SINGLE_INSTANCE_RULE, SAAS_RULE)


def _seed(**book) -> None:
    call_command("seed_demo", **(book or SMALL), stdout=io.StringIO())


def _state() -> dict:
    """Everything a re-run must leave as it was (computed timestamps aside)."""
    return {
        "label_changes": sorted(
            LabelChange.objects.values_list(
                "id",
                "instance_id",
                "field",
                "old_value",
                "new_value",
                "requested_by_id",
                "author",
                "requested_at",
                "effective_at",
                "status",
                "applied_at",
                "applied_via",
                "closed_at",
            )
        ),
        "labels": sorted(
            Instance.objects.values_list("id", "instance_type", "health_inclusion", "company_id")
        ),
        "pings": (
            UsagePing.objects.count(),
            sorted(UsagePing.objects.values_list("instance_id", "recorded_at", "umau")),
        ),
        "companies": sorted(
            Company.objects.values_list(
                "crm_account_id",
                "customer_since",
                "sentiment",
                "sentiment_note",
                "sentiment_by_id",
                "sentiment_at",
                "roi",
            )
        ),
        "scores": sorted(
            ScoreSnapshot.objects.values_list(
                "company_id",
                "is_current",
                "scheme",
                "as_of",
                "inputs_hash",
                "overall_color",
                "product_usage_value",
                "license_utilization",
            ),
            key=repr,
        ),
    }


class _LaterDate(date):
    days = 0

    @classmethod
    def today(cls):
        return date.today() + timedelta(days=cls.days)


def _days_later(monkeypatch, days: int) -> None:
    """Move the seed's clock (Django's ``now`` and the demo book's ``today``) ``days`` ahead."""
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(days=days))
    monkeypatch.setattr(_LaterDate, "days", days)
    monkeypatch.setattr(demo, "date", _LaterDate)


# --------------------------------------------------------------------------------------------------
# Time


@pytest.mark.django_db
def test_no_seeded_ping_is_later_than_now_nor_before_the_customer_signed():
    _seed()
    now = timezone.now()
    newest = UsagePing.objects.aggregate(at=Max("recorded_at"), got=Max("received_at"))
    assert newest["at"] <= now and newest["got"] <= now
    assert not Instance.objects.filter(last_ping_at__gt=now).exists()
    assert Company.objects.count() == 12
    for company in Company.objects.all():
        early = UsagePing.objects.filter(
            instance__company=company, recorded_at__date__lt=company.customer_since
        )
        assert not early.exists(), company.name


@pytest.mark.parametrize("weeks", [8, 20, 104])
def test_no_demo_ping_predates_its_customer_nor_postdates_today(weeks):
    """Across the whole book, self-managed pings and SaaS export rows alike."""
    book = build_book(weeks=weeks)
    today = date.today()
    for spec in book.instances:
        since = spec.company.customer_since
        if spec.kind == "self-managed":
            days = [k["recorded_at"].date() for k in iter_ping_kwargs(book, spec)]
        else:
            days = [date.fromisoformat(r["snapshot_date"]) for r in iter_saas_rows(book, spec)]
        assert all(since <= day < today for day in days), (spec.hostname, spec.namespace_path)


@pytest.mark.django_db
def test_generated_load_data_is_never_later_than_now():
    call_command(
        "generate_load_data", companies=30, weeks=6, namespaces=10, csms=3, stdout=io.StringIO()
    )
    now = timezone.now()
    newest = UsagePing.objects.aggregate(at=Max("recorded_at"), got=Max("received_at"))
    assert newest["at"] <= now and newest["got"] <= now
    assert not LabelChange.objects.filter(status="applied", applied_at__gt=now).exists()
    for company in Company.objects.all():
        early = UsagePing.objects.filter(
            instance__company=company, recorded_at__date__lt=company.customer_since
        )
        assert not early.exists(), company.name


@pytest.mark.django_db
@pytest.mark.parametrize("days_ahead", [0, 30])
def test_generate_load_data_refuses_a_book_ending_today_or_later(days_ahead):
    """Its pings would be dated later than now: the newest a book can end on is yesterday."""
    end = timezone.now().date() + timedelta(days=days_ahead)
    with pytest.raises(CommandError, match="yesterday"):
        call_command(
            "generate_load_data", companies=5, weeks=4, csms=1, end=end, stdout=io.StringIO()
        )
    assert not UsagePing.objects.exists()


# --------------------------------------------------------------------------------------------------
# Re-running


@pytest.mark.django_db
def test_seeding_twice_changes_nothing():
    _seed()
    first = _state()
    assert first["label_changes"] and first["scores"]
    _seed()
    assert _state() == first


@pytest.mark.django_db
@pytest.mark.parametrize("days", [1, 9])
def test_seeding_again_on_a_later_day_adds_no_pings_nor_label_history(monkeypatch, days):
    _seed()
    first = _state()
    _days_later(monkeypatch, days)
    _seed()
    again = _state()
    for part in ("label_changes", "labels", "pings", "companies"):
        assert again[part] == first[part], part
    # Scores are recomputed for the new day, as a worker would; their history stays as it was.
    history = [s for s in first["scores"] if not s[1]]
    assert history and set(history) <= set(again["scores"])


# --------------------------------------------------------------------------------------------------
# Who labeled what


@pytest.mark.django_db
def test_demo_label_history_is_the_demos_or_a_rules_never_a_real_users():
    _seed()
    changes = LabelChange.objects.all()
    assert changes.filter(author=SEED_AUTHOR).exists()
    assert not changes.filter(requested_by__isnull=False).exists()
    assert not changes.filter(applied_by__isnull=False).exists()
    usernames = set(get_user_model().objects.values_list("username", flat=True))
    assert not set(changes.values_list("author", flat=True)) & usernames
    assert set(changes.values_list("author", flat=True)) <= {SEED_AUTHOR} | {
        f"rule: {rule}" for rule in RULES
    }
    (pending,) = LabelChange.objects.pending()
    assert pending.author == SEED_AUTHOR and pending.requested_by is None
    # Dated as the book's history: none later than now, none before the instance's first ping.
    now = timezone.now()
    for change in changes.filter(author=SEED_AUTHOR).select_related("instance"):
        assert change.instance.first_ping_at <= change.requested_at <= now
        assert change.applied_at is None or change.applied_at <= now


@pytest.mark.django_db
def test_every_labeling_rule_labels_an_instance_in_the_demo():
    _seed()
    applied = LabelChange.objects.filter(status="applied", new_value="production")
    for rule in RULES:
        labeled = applied.filter(author=f"rule: {rule}").select_related("instance__company")
        assert labeled.exists(), rule
        for change in labeled:
            assert change.instance.instance_type == "production"
            assert change.instance.company.csm is None  # rules are for accounts without a CSM


@pytest.mark.django_db
def test_unknown_instances_wait_on_every_csms_accounts():
    _seed()
    unknown = Instance.objects.unknown().filter(company__csm__isnull=False)
    assert set(unknown.values_list("company__csm__username", flat=True)) == set(DEMO_CSMS)


def test_the_full_book_leaves_instances_unknown_on_every_csms_accounts():
    book = build_book()
    owners = {s.company.csm for s in book.instances if s.kind == "self-managed" and not s.label}
    assert owners >= set(DEMO_CSMS)


# --------------------------------------------------------------------------------------------------
# Score history


@pytest.mark.django_db
def test_a_fresh_demo_shows_trends_against_an_earlier_score():
    _seed()
    now = timezone.now()
    company = Company.objects.get(name="Acme Robotics")
    current, previous = selectors.snapshots_recent(company)
    assert current is not None and previous is not None
    assert previous.computed_at < current.computed_at and previous.computed_at <= now
    assert previous.as_of < current.as_of
    rows = viewmodels.score_rows(
        Scorecard.from_dict(current.detail), Scorecard.from_dict(previous.detail), None
    )
    assert rows and all(row.trend is not None for row in rows)

    client = Client()
    assert client.login(username="csm1", password="demo")
    html = client.get(reverse("account_summary", args=[company.pk])).content.decode()
    assert "no earlier score" not in html
    assert f"trend vs {previous.computed_at:%-d %b %Y %H:%M} UTC" in html


@pytest.mark.django_db
def test_every_account_scored_last_month_has_an_earlier_score():
    _seed()
    first_of_month = timezone.now().date().replace(day=1)
    for company in Company.objects.all():
        pinged_last_month = UsagePing.objects.filter(
            instance__company=company, recorded_at__date__lt=first_of_month
        ).exists()
        _, previous = selectors.snapshots_recent(company)
        assert (previous is not None) == pinged_last_month, company.name
        if previous is not None:
            assert previous.computed_at < datetime.combine(
                first_of_month + timedelta(days=1), datetime.min.time(), tzinfo=UTC
            )


# --------------------------------------------------------------------------------------------------
# The rest of overall health: voice of the customer, engagement, outcomes


GROUPS = ("voice_of_customer", "engagement", "outcomes")


@pytest.mark.django_db
def test_the_demo_scores_voice_engagement_and_outcomes_on_most_accounts():
    _seed(companies=48, weeks=30)
    now = timezone.now()
    owned = Company.objects.filter(csm__isnull=False)
    colors = {key: [] for key in GROUPS}
    for company in owned:
        _, card = current_scorecard(company)
        for key in GROUPS:
            colors[key].append(card.groups[key].color)
    for key, seen in colors.items():
        assert sum(c != "NA" for c in seen) >= 0.75 * len(seen), key
        assert len(set(seen) - {"NA"}) >= 2, key  # not one colour everywhere
    for company in Company.objects.filter(csm__isnull=True):
        _, card = current_scorecard(company)
        assert card.groups["voice_of_customer"].color != "NA", company.name
    # Imported through the CRM import, dated within the book: nothing later than now, nothing
    # from before the account was a customer.
    for company in Company.objects.all():
        assert not company.meetings.filter(day__gt=now.date()).exists()
        assert not company.meetings.filter(day__lt=company.customer_since).exists()
        early = company.customer_since.replace(day=1)
        assert not company.ticket_months.filter(month__lt=early).exists()
        assert not company.ticket_months.filter(month__gt=now.date()).exists()

    acme = Company.objects.get(name="Acme Robotics")
    client = Client()
    assert client.login(username="csm1", password="demo")
    html = client.get(reverse("account_scorecard", args=[acme.pk])).content.decode()
    for missing in ("no support tickets recorded", "no meetings recorded", "no success-plan ROI"):
        assert missing not in html


@pytest.mark.django_db
def test_reseeding_keeps_a_success_plan_roi_a_csm_changed():
    _seed()
    acme = Company.objects.get(name="Acme Robotics")
    Company.objects.filter(pk=acme.pk).update(roi="Red", roi_note="Objectives missed.")
    _seed()
    acme.refresh_from_db()
    assert (acme.roi, acme.roi_note) == ("Red", "Objectives missed.")


@pytest.mark.parametrize("day", [1, 13, 14, 15, 28, 30, 31])
def test_the_newest_ticket_month_is_recent_enough_to_score_on_any_day(day):
    """Voice of the customer is NA when the newest month ended more than 30 days before."""
    end = date(2026, 12, day)
    book = build_book(companies=12, weeks=20, end=end)
    newest = {}
    for crm, month, _ in demo.support_tickets(book):
        newest[crm] = max(newest.get(crm, month), month)
    assert len(newest) == 12
    scored_on = end + timedelta(days=1)
    for month in newest.values():
        month_end = (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        assert (scored_on - month_end).days <= 30 and month <= end


@pytest.mark.parametrize("weeks", [1, 4, 6])
def test_a_short_load_book_pings_only_within_its_weeks(weeks):
    """A new customer's first week was drawn 3 to 7 weeks before the end: in a shorter book a
    negative week, which indexed the book's dates from the end (pings twice in a week)."""
    book = build_load_book(companies=120, weeks=weeks, namespaces=20, csms=2, end=date(2026, 3, 1))
    for spec in book.instances:
        pinged = book.weeks_of(spec)
        assert all(0 <= week < weeks for week in pinged), (spec.hostname, list(pinged))
        times = [book.ping_time(spec, week) for week in pinged]
        assert len({t.date() for t in times}) == len(times)
