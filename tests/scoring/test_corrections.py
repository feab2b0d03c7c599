"""The nine places where version 1 of the schemes drifted from GitLab's sources, each at its edge.

methodology.md §1, §3, §4, §6 and service-ping.md (version 2 of every preset): the numerator
of User Engagement, the CI builds key, active subscriptions only, the first 30 days, failure
values and unsent keys, DevSecOps over Ultimate instances, unknown scan counts, sentiment on
CSM-owned accounts only, and the dbt preset's account age. Pure: no database.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from instances.parsing import parse_ping
from scoring.methodology import (
    NO_PING,
    TOO_EARLY,
    account_age,
    month_starts_between,
    select_instances,
    subscription_active,
)
from scoring.schemes import SCAN_METRICS, get_scheme
from tests.scoring.test_methodology import AS_OF, DBT, HANDBOOK, company, instance, score
from tests.scoring.test_methodology import months_before as ago

PING = {"uuid": "a-uuid", "recorded_at": "2024-05-06T07:08:09.123Z"}
PRODUCT_MEASURES = (
    "license_utilization",
    "user_engagement",
    "scm_git_operations",
    "ci_builds_per_user",
    "cd_deployment_users",
    "devsecops_scanner_users",
)


# --------------------------------------------------------------------------- 1. User Engagement


@pytest.mark.parametrize(
    ("active", "color"),
    [(499, "Red"), (500, "Yellow"), (799, "Yellow"), (800, "Green"), (1000, "Green")],
)
def test_user_engagement_reads_unique_active_users_not_umau(active, color):
    card = score(instance(unique_active_users=active, umau=1000 - active))
    ue = card.measures["user_engagement"]
    assert (ue.value, ue.color) == (active / 1000, color)
    assert ue.inputs["numerator_metrics"] == ["unique_active_users"]


def test_an_unknown_umau_no_longer_touches_user_engagement():
    ue = score(instance(umau=None, unique_active_users=850)).measures["user_engagement"]
    assert (ue.color, ue.value) == ("Green", 0.85)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("15.1.6-ee", "metric not available before 15.2"),
        ("15.2.0-ee", "unique active users not reported"),
    ],
)
def test_user_engagement_before_and_at_the_metrics_milestone(version, reason):
    ue = score(instance(version=version, unique_active_users=None)).measures["user_engagement"]
    assert (ue.color, ue.reason) == ("NA", reason)


# --------------------------------------------------------------------------- 2. CI builds key


@pytest.mark.parametrize(
    ("counts", "counts_monthly", "expected"),
    [
        ({"count_total_create_ci_build_monthly": 700}, {"ci_builds": 90}, 700),
        ({}, {"ci_builds": 90}, 90),
        ({"count_total_create_ci_build_monthly": 700}, {}, 700),
        ({"count_total_create_ci_build_monthly": None}, {"ci_builds": 90}, 90),
    ],
)
def test_ci_builds_prefer_the_handbooks_key_and_fall_back_only_when_it_is_absent(
    counts, counts_monthly, expected
):
    ping = parse_ping({**PING, "counts": counts, "counts_monthly": counts_monthly})
    assert ping.metrics["ci_builds_l28"] == expected


# ------------------------------------------------------------------------ 3. active subscriptions


@pytest.mark.parametrize(
    ("status", "start", "end", "active"),
    [
        ("active", None, None, True),
        ("active", None, AS_OF, True),  # its last day still counts
        ("active", None, AS_OF - timedelta(days=1), False),  # dates win over a stale status
        ("expired", None, AS_OF + timedelta(days=30), True),
        ("active", AS_OF, None, True),
        ("active", AS_OF + timedelta(days=1), None, False),
        ("cancelled", None, None, False),  # ended on a day nobody recorded
        ("expired", None, None, False),
    ],
)
def test_an_instance_counts_only_while_its_subscription_is_active(status, start, end, active):
    assert (
        subscription_active(status=status, start=start, end=end, first_day=AS_OF, last_day=AS_OF)
        is active
    )
    card = score(
        instance(subscription_status=status, subscription_start=start, subscription_end=end)
    )
    assert (card.instance_ids == (1,)) is active
    if not active:
        assert card.measures["license_utilization"].reason == (
            "no Production instance on an active subscription"
        )


def test_the_reason_names_the_subscription_and_the_day_it_ended():
    ended = AS_OF - timedelta(days=10)
    selection = select_instances(
        [instance(subscription_end=ended)], as_of=AS_OF, scheme=get_scheme(HANDBOOK)
    )
    assert selection.excluded == ((1, f"subscription A-S-10 ended on {ended.isoformat()}"),)


def test_seats_come_only_from_active_subscriptions():
    expired = instance(
        2, subscription_id=20, licensed_seats=500, subscription_end=AS_OF - timedelta(days=1)
    )
    card = score(instance(1, billable_users=800), expired)
    lu = card.measures["license_utilization"]
    assert (lu.inputs["numerator"], lu.inputs["denominator"]) == (800, 1000)
    assert card.instance_ids == (1,)
    assert "more than one instance" not in " ".join(card.warnings)


def test_an_instance_without_a_subscription_is_not_held_back_by_the_rule():
    card = score(instance(subscription_id=None, licensed_seats=None, subscription_status=None))
    assert card.instance_ids == (1,)


def test_a_month_of_history_counts_a_subscription_active_in_any_part_of_it():
    month = date(2025, 5, 1)
    ended_mid_month = instance(subscription_end=date(2025, 5, 10), days_ago=40)
    inputs = company(ended_mid_month, as_of=date(2025, 5, 31), period_start=month)
    scheme = get_scheme(HANDBOOK)
    selection = select_instances(
        inputs.candidates, as_of=inputs.as_of, scheme=scheme, period_start=month
    )
    assert [c.instance_id for c in selection.included] == [1]
    # ... and not in a month after it ended.
    june = select_instances(
        inputs.candidates, as_of=date(2025, 6, 30), scheme=scheme, period_start=date(2025, 6, 1)
    )
    assert june.included == () and june.na_reason == (
        "no Production instance on an active subscription"
    )


# --------------------------------------------------------------------------- 4. first 30 days


@pytest.mark.parametrize(
    ("since", "too_early"),
    [
        (AS_OF, True),
        (AS_OF - timedelta(days=29), True),
        (ago(1, day=AS_OF.day + 1), True),  # one day short of a whole month
        (ago(1), False),
    ],
)
def test_the_first_30_days_leave_every_product_measure_na(since, too_early):
    card = score(instance(), customer_since=since, sentiment="Green", sentiment_date=AS_OF)
    reasons = {card.measures[k].reason for k in PRODUCT_MEASURES}
    if too_early:
        assert reasons == {TOO_EARLY}
        assert card.product_usage.color == "NA" and card.product_usage.reason == TOO_EARLY
        # Sentiment still counts: overall health is the CSM's word alone.
        assert (card.csm_sentiment.color, card.overall_health.color) == ("Green", "Green")
    else:
        assert TOO_EARLY not in reasons
        assert card.measures["user_engagement"].color != "NA"
        assert card.measures["license_utilization"].reason == "too early to score"


# --------------------------------------------------------------------------- 5. failure values


@pytest.mark.parametrize("sentinel", [-1, -2, -3, -1000, {"-1": -1}])
def test_a_failure_value_is_recorded_as_failed_not_as_absent(sentinel):
    payload = {**PING, "usage_activity_by_stage_monthly": {"manage": {"events": sentinel}}}
    ping = parse_ping(payload)
    assert ping.metrics["umau"] is None
    assert "umau" in ping.failed
    assert "unique_active_users" not in ping.failed  # absent: not sent, not failed
    assert ping.not_numeric == ()


def test_junk_and_nulls_are_not_failure_values():
    payload = {**PING, "usage_activity_by_stage_monthly": {"manage": {"events": "n/a"}}}
    payload["license_billable_users"] = None
    ping = parse_ping(payload)
    assert ping.failed == ()
    assert ping.not_numeric == ("umau",)


def test_a_failure_value_is_named_as_one_in_the_reason():
    card = score(instance(unique_active_users=None, failed=frozenset({"unique_active_users"})))
    ue = card.measures["user_engagement"]
    assert (ue.color, ue.reason) == (
        "NA",
        "instance reported a failure value for unique active users",
    )


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("15.9.3-ee", "internal pipelines (L28) not available before 15.10"),
        ("15.10.0-ee", "internal pipelines (L28) not reported"),
    ],
)
def test_a_key_the_version_does_not_send_yet_names_the_milestone(version, reason):
    card = score(instance(version=version, ci_internal_pipelines_l28=None))
    measure = card.measures["devsecops_scans_per_pipeline"]
    assert (measure.color, measure.reason) == ("NA", reason)


# --------------------------------------------------------------------------- 6. DevSecOps


def test_devsecops_is_computed_over_the_ultimate_instances_only():
    premium = instance(2, subscription_id=20, plan="premium", secure_scanner_users=0)
    ultimate = instance(1, secure_scanner_users=300)
    card = score(ultimate, premium)
    users = card.measures["devsecops_scanner_users"]
    # Over both: 300 ÷ 2,000 = 15 % (Yellow); over the Ultimate instance alone: 30 % (Green).
    assert (users.value, users.color) == (0.3, "Green")
    assert users.inputs["instance_ids"] == [1] and users.inputs["plan_only"] == ["ultimate"]
    # Other use cases still read both instances.
    assert card.measures["scm_git_operations"].inputs["instance_ids"] == [1, 2]


def test_devsecops_over_ultimate_instances_alone_records_no_plan_note():
    users = score(instance()).measures["devsecops_scanner_users"]
    assert "plan_only" not in users.inputs


def test_devsecops_is_na_when_no_included_instance_is_ultimate():
    card = score(instance(plan="premium"))
    assert card.measures["devsecops_scanner_users"].reason == (
        "Premium subscription: DevSecOps applies to Ultimate only"
    )


# --------------------------------------------------------------------------- 7. scanners in use


def _scans(known: dict[str, int | None]) -> dict[str, int | None]:
    return {name: known.get(name) for name in SCAN_METRICS}


@pytest.mark.parametrize(
    ("known", "count", "color"),
    [
        ({"sast_scans_l28": 4}, 1, "Red"),
        ({"sast_scans_l28": 4, "dast_scans_l28": 2}, 2, "Yellow"),
        ({"sast_scans_l28": 4, "dast_scans_l28": 2, "secret_detection_scans_l28": 1}, 3, "Green"),
        ({"sast_scans_l28": 0}, 0, "Red"),
    ],
)
def test_an_unknown_scan_count_counts_as_not_in_use_and_is_named(known, count, color):
    measure = score(instance(**_scans(known))).measures["devsecops_scanners_in_use"]
    assert (measure.value, measure.color) == (count, color)
    assert measure.inputs["unknown_metrics"] == [m for m in SCAN_METRICS if m not in known]


def test_scanners_in_use_is_na_only_when_all_seven_are_unknown():
    measure = score(instance(**_scans({}))).measures["devsecops_scanners_in_use"]
    assert (measure.color, measure.value) == ("NA", None)
    assert measure.inputs["unknown_metrics"] == list(SCAN_METRICS)
    assert measure.reason == "SAST scans (L28) not reported"


# --------------------------------------------------------------------------- 8. CSM sentiment


@pytest.mark.parametrize("sentiment", ["Green", "Red"])
def test_sentiment_counts_only_on_csm_owned_accounts(sentiment):
    owned = score(instance(), sentiment=sentiment, sentiment_date=AS_OF)
    pooled = score(instance(), sentiment=sentiment, sentiment_date=AS_OF, csm_owned=False)
    assert owned.csm_sentiment.color == sentiment
    assert (pooled.csm_sentiment.color, pooled.csm_sentiment.reason) == (
        "NA",
        "not a CSM-owned account",
    )
    assert pooled.csm_sentiment.inputs["sentiment"] == sentiment  # still shown
    # Overall health is product usage alone; a Red word forces nothing there.
    assert pooled.overall_health.value == pooled.product_usage.value
    assert pooled.overall_health.inputs["forced_red_by_sentiment"] is False


# --------------------------------------------------------------------------- 9. dbt account age


@pytest.mark.parametrize(
    ("since", "as_of", "months"),
    [
        (date(2025, 1, 31), date(2025, 2, 1), 1),
        (date(2025, 1, 1), date(2025, 1, 31), 0),
        (date(2025, 1, 15), date(2025, 4, 14), 3),
        (date(2024, 12, 20), date(2025, 1, 2), 1),
    ],
)
def test_the_dbt_age_counts_month_starts(since, as_of, months):
    assert month_starts_between(since, as_of) == months
    assert account_age(since, as_of, get_scheme(DBT)) == months


@pytest.mark.parametrize(
    ("months", "handbook", "dbt"),
    [
        # 40 % License Utilization: Yellow in the first column, Red from the second.
        (1, "NA", "NA"),
        (2, "Yellow", "NA"),  # the dbt table starts at 3
        (3, "Yellow", "Yellow"),
        (6, "Red", "Yellow"),  # the dbt second column starts at 7
        (7, "Red", "Red"),
    ],
)
def test_the_dbt_columns_start_at_3_7_and_10(months, handbook, dbt):
    candidate = instance(billable_users=400)
    since = ago(months)
    for scheme, color in ((HANDBOOK, handbook), (DBT, dbt)):
        lu = score(candidate, scheme=scheme, customer_since=since).measures["license_utilization"]
        assert lu.color == color, (scheme, months)


def test_the_dbt_first_30_days_are_the_customer_since_month():
    since = date(2025, 6, 1)
    same_month = score(instance(), scheme=DBT, customer_since=since)
    assert same_month.measures["user_engagement"].reason == TOO_EARLY
    july = company(instance(days_ago=None), customer_since=since, as_of=date(2025, 7, 1))
    assert account_age(july.customer_since, july.as_of, get_scheme(DBT)) == 1


def test_every_preset_is_at_version_2():
    for name in (HANDBOOK, DBT, "gitlab-handbook-legacy"):
        assert get_scheme(name).version == "2"


def test_a_never_pinged_instance_still_waits_for_its_first_ping():
    selection = select_instances(
        [instance(days_ago=None)], as_of=AS_OF, scheme=get_scheme(HANDBOOK)
    )
    assert selection.excluded == ((1, NO_PING),) and selection.na_reason == NO_PING
