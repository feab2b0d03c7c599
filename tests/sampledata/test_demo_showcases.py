"""The demo book shows each of the nine corrections of version 2 of the presets on a real account.

Methodology §12 lists them. The full demo book is seeded once, through ``seed_demo`` (the real
import, ingest and scoring paths), and each test reads what a CSM opening the showcase account
would see: the stored scorecard under the default preset (``gitlab-handbook-2025``), or the
``gitlab-dbt-2024`` preset's for correction 9. Beside the colour the correction gives, each test
checks what version 1 would have made of the same data, so a showcase that stops showing its
correction (the data drifting, or the rule being lost) fails here.
"""

from __future__ import annotations

import dataclasses
import io
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import orjson
import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import Company, Subscription
from instances.models import Instance, UsagePing
from scoring.methodology import (
    TOO_EARLY,
    classify,
    score_company,
    score_sentiment,
    select_instances,
)
from scoring.schemes import PRESETS
from scoring.scorecard import CompanyInputs, Scorecard
from scoring.services import current_scorecard, load_inputs, with_settings
from usage_portal.sampledata import demo

# The module's tests read pure data, but the mark is what has pytest-django set up the test
# database that the module's fixture seeds.
pytestmark = pytest.mark.django_db

HANDBOOK, DBT = "gitlab-handbook-2025", "gitlab-dbt-2024"


@dataclass(frozen=True)
class SeededDemo:
    """What the seeded demo book holds, read out before the module's transaction rolls back."""

    today: date
    stored: dict[str, Scorecard]  # the scorecard seed_demo stored, by account name
    cards: dict[tuple[str, str], Scorecard]  # (account, preset) → scorecard computed today
    inputs: dict[str, CompanyInputs]
    hosts: dict[int, str]  # instance id → hostname
    latest_payloads: dict[str, dict]  # hostname → the newest ping's payload as received
    subscriptions: dict[str, tuple[str, date]]  # name → (status, end date)
    sentiment_by: dict[str, str]  # account → username of whoever recorded its sentiment
    newest_ping_at: datetime
    pinged_before_signing: list[str]  # accounts with a ping dated before their customer-since


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker) -> SeededDemo:
    with django_db_blocker.unblock(), transaction.atomic():
        call_command("seed_demo", stdout=io.StringIO())  # the default book: 48 accounts, 2 years
        today = timezone.now().date()
        companies = {c.id: c for c in Company.objects.select_related("sentiment_by")}
        inputs = load_inputs(list(companies), as_of=today)
        seeded = SeededDemo(
            today=today,
            stored={c.name: current_scorecard(c)[1] for c in companies.values()},
            cards={
                (companies[cid].name, preset): score_company(inp, with_settings(PRESETS[preset]))
                for cid, inp in inputs.items()
                for preset in (HANDBOOK, DBT)
            },
            inputs={companies[cid].name: inp for cid, inp in inputs.items()},
            hosts=dict(Instance.objects.values_list("id", "hostname")),
            latest_payloads={
                inst.hostname: orjson.loads(zlib.decompress(bytes(ping.raw_payload)))
                for inst in Instance.objects.filter(kind="self-managed")
                if (ping := inst.pings.order_by("-recorded_at").first()) and ping.raw_payload
            },
            subscriptions={s.name: (s.status, s.end_date) for s in Subscription.objects.all()},
            sentiment_by={
                c.name: c.sentiment_by.username for c in companies.values() if c.sentiment_by
            },
            newest_ping_at=UsagePing.objects.aggregate(at=Max("recorded_at"))["at"],
            pinged_before_signing=sorted(
                {
                    c.name
                    for c in companies.values()
                    if UsagePing.objects.filter(
                        instance__company=c, recorded_at__date__lt=c.customer_since
                    ).exists()
                }
            ),
        )
        transaction.set_rollback(True)
    return seeded


def _measure(seeded: SeededDemo, account: str, key: str, preset: str = HANDBOOK):
    card = seeded.stored[account] if preset == HANDBOOK else seeded.cards[(account, preset)]
    return card.measures[key]


def _scheme(preset: str):
    return with_settings(PRESETS[preset])


def _band(preset: str, key: str, value: float) -> str:
    spec = next(m for m in _scheme(preset).measures if m.key == key)
    return classify(value, spec.bands)


def test_every_correction_has_a_showcase_in_the_book():
    book = demo.build_book()
    assert set(demo.SHOWCASES) == set(range(2, 10))  # 1 shows on ordinary accounts
    assert all(0 <= i < len(book.companies) for i in demo.SHOWCASES.values())


def test_the_demo_is_honest_about_time(seeded):
    """No ping is later than now, and none is older than the account's first day as a customer."""
    assert seeded.newest_ping_at <= timezone.now()
    assert seeded.newest_ping_at.date() == seeded.today - timedelta(days=1)
    assert seeded.pinged_before_signing == []


def test_the_stored_scorecards_are_the_ones_the_engine_computes_today(seeded):
    for name, stored in seeded.stored.items():
        computed = seeded.cards[(name, HANDBOOK)]
        assert stored.scheme == computed.scheme == f"{HANDBOOK}@2"  # version 2 of the preset
        assert {k: m.color for k, m in stored.measures.items()} == {
            k: m.color for k, m in computed.measures.items()
        }, name


@pytest.mark.parametrize("account", ["Cyberdyne Systems", "Dunder Paper", "Planet Express"])
def test_1_user_engagement_reads_unique_active_users_not_umau(seeded, account):
    ue = _measure(seeded, account, "user_engagement")
    assert ue.inputs["numerator_metrics"] == ["unique_active_users"]
    (instance,) = (
        c for c in seeded.inputs[account].candidates if c.instance_id in ue.inputs["instance_ids"]
    )
    billable = instance.metrics["billable_users"]
    assert ue.inputs["numerator"] == instance.metrics["unique_active_users"]
    assert ue.color == _band(HANDBOOK, "user_engagement", ue.value)
    # Version 1 read UMAU, which falls in another band on these accounts.
    assert _band(HANDBOOK, "user_engagement", instance.metrics["umau"] / billable) != ue.color


def test_2_ci_builds_prefer_the_handbook_key_on_the_instance_that_sends_both(seeded):
    builds = _measure(seeded, "Vandelay Imports", "ci_builds_per_user")
    payload = seeded.latest_payloads["gitlab.vandelay-imports.example.com"]
    assert payload["version"].startswith("17.")
    handbook_key = payload["counts"]["count_total_create_ci_build_monthly"]
    other_key = payload["counts_monthly"]["ci_builds"]
    assert handbook_key != other_key
    assert builds.inputs["numerator"] == handbook_key
    assert builds.color == "Yellow"
    # Version 1 read counts_monthly.ci_builds first: a Red account.
    assert _band(HANDBOOK, "ci_builds_per_user", other_key / builds.inputs["denominator"]) == "Red"
    # Only this showcase instance sends both keys.
    both = [
        host
        for host, p in seeded.latest_payloads.items()
        if "count_total_create_ci_build_monthly" in p.get("counts", {})
        and "ci_builds" in p.get("counts_monthly", {})
    ]
    assert both == ["gitlab.vandelay-imports.example.com"]


def test_3_an_instance_on_a_subscription_that_ended_last_month_no_longer_counts(seeded):
    inputs = seeded.inputs["Sterling Cooper"]
    lapsed = next(
        c for c in inputs.candidates if seeded.hosts[c.instance_id].startswith("gitlab-eu.")
    )
    status, ended = seeded.subscriptions[lapsed.subscription_name]
    first_of_this_month = seeded.today.replace(day=1)
    assert status == "expired"
    assert (first_of_this_month - timedelta(days=1)).replace(day=1) <= ended < first_of_this_month
    assert lapsed.recorded_at.date() >= seeded.today - timedelta(days=8)  # it still pings
    selection = select_instances(inputs.candidates, as_of=seeded.today, scheme=_scheme(HANDBOOK))
    assert dict(selection.excluded)[lapsed.instance_id] == (
        f"subscription {lapsed.subscription_name} ended on {ended.isoformat()}"
    )

    lu = _measure(seeded, "Sterling Cooper", "license_utilization")
    assert lapsed.instance_id not in lu.inputs["instance_ids"]
    assert lapsed.subscription_id not in lu.inputs["subscription_ids"]
    assert lu.color == "Green"
    # Version 1 did not ask whether the subscription still runs: with it running, both
    # Production instances count, and both subscriptions' seats, and the account is Red.
    running = dataclasses.replace(lapsed, subscription_status="active", subscription_end=None)
    as_v1 = dataclasses.replace(
        inputs,
        candidates=tuple(running if c is lapsed else c for c in inputs.candidates),
    )
    v1_lu = score_company(as_v1, _scheme(HANDBOOK)).measures["license_utilization"]
    assert lapsed.instance_id in v1_lu.inputs["instance_ids"]
    assert v1_lu.color == "Red"


def test_4_a_customer_signed_two_weeks_ago_is_too_early_to_score(seeded):
    inputs = seeded.inputs["Wonka Confectionery"]
    assert inputs.customer_since == seeded.today - timedelta(days=14)
    card = seeded.stored["Wonka Confectionery"]
    assert len(card.measures) == 10  # every product measure of the preset
    assert {m.reason for m in card.measures.values()} == {TOO_EARLY}
    assert {m.color for m in card.measures.values()} == {"NA"}
    assert card.product_usage.color == "NA"
    # It pings (only since it signed) and, two months older, would be scored: the 30-day rule
    # alone holds it back. Version 1 scored everything but License Utilization from day one.
    assert all(
        c.recorded_at.date() >= inputs.customer_since for c in inputs.candidates if c.recorded_at
    )
    older = dataclasses.replace(inputs, customer_since=inputs.customer_since - timedelta(days=62))
    aged = score_company(older, _scheme(HANDBOOK))
    assert all(m.color != "NA" for m in aged.measures.values())


def test_5_failure_values_and_unsent_keys_are_named(seeded):
    payload = seeded.latest_payloads["gitlab.monarch-solutions.example.com"]
    assert payload["usage_activity_by_stage_monthly"]["secure"]["container_scanning_scans"] == -1
    scans = _measure(seeded, "Monarch Solutions", "devsecops_scans_per_pipeline")
    assert scans.color == "NA"
    assert scans.reason == "instance reported a failure value for container scanning scans (L28)"
    # A key the version does not send yet: Initech's 13.12 instance and the L28 pipelines of
    # 15.10 (version 1 scored it Red from a key that version never sent).
    initech = _measure(seeded, "Initech", "devsecops_scans_per_pipeline")
    assert initech.color == "NA"
    assert initech.reason == "internal pipelines (L28) not available before 15.10"


def test_6_devsecops_runs_over_the_ultimate_instances_only(seeded):
    inputs = seeded.inputs["Buy n Large"]
    production = [c for c in inputs.candidates if c.instance_type == "production"]
    assert sorted(c.plan for c in production) == ["premium", "ultimate"]
    users = _measure(seeded, "Buy n Large", "devsecops_scanner_users")
    (ultimate,) = (c for c in production if c.plan == "ultimate")
    assert users.inputs["plan_only"] == ["ultimate"]
    assert users.inputs["instance_ids"] == [ultimate.instance_id]
    assert users.color == "Green"
    # Version 1 divided by the Premium division's users too: Yellow.
    diluted = sum(c.metrics["secure_scanner_users"] for c in production) / sum(
        c.metrics["billable_users"] for c in production
    )
    assert _band(HANDBOOK, "devsecops_scanner_users", diluted) == "Yellow"


def test_7_an_unknown_scan_count_counts_as_not_in_use(seeded):
    in_use = _measure(seeded, "Monarch Solutions", "devsecops_scanners_in_use")
    assert in_use.color == "Yellow" and in_use.value == 2
    # Named for the explanation; version 1 made the measure NA for them.
    assert in_use.inputs["unknown_metrics"] == list(demo.FAILING_SCANS)


def test_8_sentiment_counts_only_on_csm_owned_accounts(seeded):
    inputs = seeded.inputs["Duff Brewing"]
    assert not inputs.csm_owned
    assert inputs.sentiment == "Red"
    assert seeded.sentiment_by["Duff Brewing"] == "ops"
    sentiment = seeded.stored["Duff Brewing"].csm_sentiment
    assert sentiment.color == "NA"
    assert sentiment.reason == "not a CSM-owned account"
    assert sentiment.inputs["sentiment"] == "Red"  # shown, though it does not count
    # Version 1 counted it.
    counted = score_sentiment(
        inputs.sentiment, inputs.sentiment_date, as_of=seeded.today, scheme=_scheme(HANDBOOK)
    )
    assert counted.color == "Red"


def test_9_the_dbt_preset_counts_account_age_in_month_starts(seeded):
    since = seeded.inputs["Encom"].customer_since
    assert since.day == 1 and since < seeded.today
    handbook = _measure(seeded, "Encom", "license_utilization", HANDBOOK)
    dbt = _measure(seeded, "Encom", "license_utilization", DBT)
    assert handbook.inputs["account_age_months"] == dbt.inputs["account_age_months"] == 6
    assert handbook.value == dbt.value
    # At six months the dbt preset's first column (3 to 7 months) still applies: Green. Version
    # 1 used the handbook's columns (2, 6, 9), as the default preset still does: Yellow.
    assert dbt.color == "Green"
    assert handbook.color == "Yellow"
