"""The pure scoring core: every threshold edge, NA reason and roll-up of methodology.md.

No database: these build plain ``CompanyInputs`` and check the ``Scorecard``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest

from scoring.methodology import (
    account_age_months,
    included_totals,
    roll_up,
    score_company,
    select_instances,
)
from scoring.schemes import (
    DEFAULT_SCHEME,
    LICENSED_SEATS,
    METRICS,
    PRESETS,
    SCAN_METRICS,
    get_scheme,
)
from scoring.scorecard import CompanyInputs, InstanceCandidate, Scorecard, api_health_payload
from tests.health_api import HEALTH_API_FIELDS, HEALTH_API_MEASURES

AS_OF = date(2025, 6, 15)
HANDBOOK = "gitlab-handbook-2025"
DBT = "gitlab-dbt-2024"
LEGACY = "gitlab-handbook-legacy"


def months_before(months: int, day: int = AS_OF.day) -> date:
    total = AS_OF.year * 12 + AS_OF.month - 1 - months
    return date(total // 12, total % 12 + 1, day)


def healthy_metrics() -> dict[str, int | None]:
    """A complete ping whose every measure is scorable (1,000 billable users)."""
    values: dict[str, int | None] = {name: 0 for name in METRICS if name != LICENSED_SEATS}
    values.update(
        billable_users=1000,
        licensed_users=1000,
        active_users=1000,
        historical_max_users=1000,
        umau=900,
        unique_active_users=900,
        git_operation_users=500,
        pipeline_users=500,
        ci_build_users=500,
        ci_builds_l28=50_000,
        ci_internal_pipelines_l28=1000,
        deployments_l28=8000,
        successful_deployments_l28=900,
        failed_deployments_l28=100,
        deployment_users=200,
        secure_scanner_users=300,
        sast_scans_l28=400,
        dast_scans_l28=200,
        dependency_scanning_scans_l28=100,
    )
    return values


def instance(
    instance_id: int = 1,
    *,
    is_saas: bool = False,
    instance_type: str = "production",
    health_inclusion: str = "",
    subscription_id: int | None = 10,
    plan: str | None = "ultimate",
    licensed_seats: int | None = 1000,
    days_ago: int | None = 7,
    version: str | None = "17.3.1-ee",
    failed: frozenset[str] = frozenset(),
    subscription_status: str | None = "active",
    subscription_start: date | None = None,
    subscription_end: date | None = None,
    **metrics: int | None,
) -> InstanceCandidate:
    values = healthy_metrics()
    values.update(metrics)
    recorded_at = (
        datetime.combine(AS_OF - timedelta(days=days_ago), time(12), tzinfo=UTC)
        if days_ago is not None
        else None
    )
    return InstanceCandidate(
        instance_id=instance_id,
        name=f"gitlab{instance_id}.example.com",
        is_saas=is_saas,
        instance_type=instance_type,
        health_inclusion=health_inclusion,
        subscription_id=subscription_id,
        plan=plan,
        licensed_seats=licensed_seats,
        ping_id=instance_id * 100 if days_ago is not None else None,
        recorded_at=recorded_at,
        version=version,
        metrics=values,
        failed=failed,
        subscription_name=f"A-S-{subscription_id}" if subscription_id is not None else None,
        subscription_status=subscription_status,
        subscription_start=subscription_start,
        subscription_end=subscription_end,
    )


def company(
    *candidates: InstanceCandidate,
    customer_since: date | None = date(2022, 1, 1),
    sentiment: str | None = None,
    sentiment_date: date | None = None,
    csm_owned: bool = True,
    as_of: date = AS_OF,
    period_start: date | None = None,
    **groups,
) -> CompanyInputs:
    return CompanyInputs(
        company_id=1,
        customer_since=customer_since,
        sentiment=sentiment,
        sentiment_date=sentiment_date,
        candidates=candidates,
        as_of=as_of,
        csm_owned=csm_owned,
        period_start=period_start,
        **groups,
    )


def score(*candidates: InstanceCandidate, scheme: str = HANDBOOK, **kwargs) -> Scorecard:
    return score_company(company(*candidates, **kwargs), get_scheme(scheme))


# --------------------------------------------------------------------------- schemes


def test_default_scheme_is_the_2025_handbook_with_its_weights_and_points():
    scheme = get_scheme(DEFAULT_SCHEME)
    assert scheme.label == "gitlab-handbook-2025@2"
    assert dict(scheme.color_points) == {"Red": 25, "Yellow": 63, "Green": 88}
    assert dict(scheme.product_usage_weights) == {
        "license_utilization": 30,
        "user_engagement": 10,
        "scm": 15,
        "ci": 15,
        "cd": 15,
        "devsecops": 15,
    }
    assert dict(scheme.overall_weights) == {
        "product_usage": 50,
        "csm_sentiment": 25,
        "outcomes": 10,
        "voice_of_customer": 5,
        "engagement": 10,
    }
    assert (scheme.sentiment_stale_days, scheme.sentiment_na_days) == (90, 120)
    assert scheme.stale_ping_days == 60


def test_presets_are_listed_by_name_and_label():
    assert set(PRESETS) == {HANDBOOK, DBT, LEGACY}
    assert get_scheme("gitlab-dbt-2024@2") is PRESETS[DBT]
    assert [m.key for m in PRESETS[DBT].measures_for("ci")] == ["ci_pipeline_users"]
    assert [m.key for m in PRESETS[HANDBOOK].measures_for("ci")] == ["ci_builds_per_user"]


@pytest.mark.parametrize("name", ["nope", "gitlab-handbook-2025@99"])
def test_unknown_scheme_names_the_valid_ones(name):
    with pytest.raises(KeyError, match="gitlab-dbt-2024, gitlab-handbook-2025"):
        get_scheme(name)


def test_thresholds_are_described_for_humans():
    scheme = get_scheme(HANDBOOK)
    scm = scheme.measures_for("scm")[0]
    assert scm.thresholds == "Red ≤ 10% · Yellow > 10% – ≤ 33% · Green > 33%"
    deployment_users = next(m for m in scheme.measures if m.key == "cd_deployment_users")
    assert deployment_users.thresholds == "Red < 5% · Yellow ≥ 5% – ≤ 12% · Green > 12%"


# --------------------------------------------------------------------------- measure edges


def per_billable(metric: str):
    """Metrics putting ``count`` of ``metric`` against 1,000 billable users."""
    return lambda count: {metric: count, "billable_users": 1000}


def deployment_success(successful: int) -> dict[str, int]:
    return {"successful_deployments_l28": successful, "failed_deployments_l28": 1000 - successful}


def scans_per_pipeline(scans: int) -> dict[str, int]:
    return {
        **dict.fromkeys(SCAN_METRICS, 0),
        "sast_scans_l28": scans,
        "ci_internal_pipelines_l28": 1000,
    }


def scanners_in_use(types: int) -> dict[str, int]:
    return {metric: int(i < types) for i, metric in enumerate(SCAN_METRICS)}


COLORS = {"R": "Red", "Y": "Yellow", "G": "Green"}

# (measure key, metrics for a count per 1,000, its two edges, the colours R/Y/G of a count just
# below, on and just above the first edge, then the second): the value is the count / 1,000.
SHARED_THRESHOLDS = [
    ("user_engagement", per_billable("unique_active_users"), (500, 800), "RYYYGG"),
    ("cd_deployment_users", per_billable("deployment_users"), (50, 120), "RYYYYG"),
    ("cd_deployments_per_user", per_billable("deployments_l28"), (2000, 7000), "RYYYYG"),
    ("cd_deployment_success", deployment_success, (250, 800), "RYYYYG"),
    ("devsecops_scanner_users", per_billable("secure_scanner_users"), (50, 200), "RRYYGG"),
    ("devsecops_scans_per_pipeline", scans_per_pipeline, (100, 500), "RYYYYG"),
]
HANDBOOK_THRESHOLDS = [
    ("scm_git_operations", per_billable("git_operation_users"), (100, 330), "RRYYYG"),
    ("ci_builds_per_user", per_billable("ci_builds_l28"), (2000, 40_000), "RRYYYG"),
]
DBT_THRESHOLDS = [
    ("scm_git_operations", per_billable("git_operation_users"), (250, 500), "RYYYGG"),
    ("ci_pipeline_users", per_billable("pipeline_users"), (100, 333), "RRYYYG"),
]
# (measure key, metric overrides, expected value, expected colour) of the scanner-type count.
SCANNER_CASES = [
    ("devsecops_scanners_in_use", scanners_in_use(types), types, color)
    for types, color in [(0, "Red"), (1, "Red"), (2, "Yellow"), (3, "Green"), (7, "Green")]
]


def edge_cases(schemes: tuple[str, ...], thresholds: list[tuple]) -> list[tuple]:
    """(scheme, key, metrics, value, colour) for a count just below, on and above each edge."""
    return [
        (scheme, key, metrics(count), count / 1000, COLORS[code])
        for scheme in schemes
        for key, metrics, edges, codes in thresholds
        for count, code in zip(
            [edge + step for edge in edges for step in (-1, 0, 1)], codes, strict=True
        )
    ]


EDGE_CASES = (
    edge_cases((HANDBOOK, DBT, LEGACY), SHARED_THRESHOLDS)
    + [(scheme, *row) for scheme in (HANDBOOK, DBT, LEGACY) for row in SCANNER_CASES]
    + edge_cases((HANDBOOK, LEGACY), HANDBOOK_THRESHOLDS)
    + edge_cases((DBT,), DBT_THRESHOLDS)
)


@pytest.mark.parametrize(("scheme", "key", "metrics", "value", "color"), EDGE_CASES)
def test_measure_threshold_edges(scheme, key, metrics, value, color):
    result = score(instance(**metrics), scheme=scheme).measures[key]
    assert result.value == pytest.approx(value)
    assert result.color == color
    assert result.points == {"Red": 25, "Yellow": 63, "Green": 88}[color]
    assert result.reason is None


def test_measure_inputs_explain_the_value():
    result = score(instance(git_operation_users=250)).measures["scm_git_operations"]
    assert result.inputs["numerator"] == 250
    assert result.inputs["denominator"] == 1000
    assert result.inputs["numerator_metrics"] == ["git_operation_users"]
    assert result.inputs["denominator_metrics"] == ["billable_users"]
    assert result.inputs["instance_ids"] == [1]
    assert result.inputs["ping_ids"] == [100]
    assert result.inputs["thresholds"] == "Red ≤ 10% · Yellow > 10% – ≤ 33% · Green > 33%"


def test_scans_per_pipeline_sums_all_seven_scan_types():
    result = score(instance(**dict.fromkeys(SCAN_METRICS, 10))).measures[
        "devsecops_scans_per_pipeline"
    ]
    assert result.inputs["numerator"] == 70
    assert result.value == pytest.approx(0.07)


# --------------------------------------------------------------------------- license utilization

# (billable users of 1,000 seats, colour by age column 2–<6, 6–<9, ≥9) for the handbook.
LU_TABLE = [
    (99, ("Red", "Red", "Red")),
    (100, ("Yellow", "Red", "Red")),
    (101, ("Yellow", "Red", "Red")),
    (499, ("Yellow", "Red", "Red")),
    (500, ("Yellow", "Red", "Red")),
    (501, ("Green", "Yellow", "Red")),
    (749, ("Green", "Yellow", "Red")),
    (750, ("Green", "Yellow", "Red")),
    (751, ("Green", "Green", "Green")),
]
# Each column at both of its ends: the handbook's start at 2, 6 and 9 whole months, the dbt
# model's at 3, 7 and 10 month starts (the same customer-since day: the two counts agree).
AGE_COLUMNS = {
    HANDBOOK: [(2, 0), (5, 0), (6, 1), (8, 1), (9, 2), (40, 2)],
    DBT: [(3, 0), (6, 0), (7, 1), (9, 1), (10, 2), (40, 2)],
}


@pytest.mark.parametrize(
    ("scheme", "age", "column"),
    [(scheme, age, column) for scheme, ages in AGE_COLUMNS.items() for age, column in ages],
)
@pytest.mark.parametrize(("billable", "colors"), LU_TABLE)
def test_license_utilization_table(scheme, billable, colors, age, column):
    expected = colors[column]
    if scheme == DBT and billable == 100:
        expected = "Red"  # the dbt model puts exactly 10% in the "< 10%" row
    result = score(
        instance(billable_users=billable), scheme=scheme, customer_since=months_before(age)
    ).measures["license_utilization"]
    assert result.value == pytest.approx(billable / 1000)
    assert result.color == expected
    assert result.inputs["account_age_months"] == age


@pytest.mark.parametrize(("scheme", "color"), [(HANDBOOK, "Yellow"), (DBT, "Red")])
def test_license_utilization_of_exactly_ten_percent_in_first_column(scheme, color):
    result = score(
        instance(billable_users=100), scheme=scheme, customer_since=months_before(3)
    ).measures["license_utilization"]
    assert result.color == color


def test_license_utilization_is_too_early_before_two_months():
    # Younger than a month, every measure is NA (test_corrections: the first 30 days).
    result = score(instance(billable_users=900), customer_since=months_before(1)).measures[
        "license_utilization"
    ]
    assert result.color == "NA"
    assert result.points is None
    assert result.reason == "too early to score"
    assert result.value == pytest.approx(0.9)


def test_license_utilization_needs_a_customer_since_date():
    result = score(instance(), customer_since=None).measures["license_utilization"]
    assert (result.color, result.reason) == ("NA", "customer-since date not set")


def test_seed_example_200_licenses_80_billable_after_9_months_is_red():
    result = score(
        instance(licensed_seats=200, billable_users=80), customer_since=months_before(9)
    ).measures["license_utilization"]
    assert result.value == pytest.approx(0.40)
    assert result.color == "Red"
    assert result.points == 25
    assert result.inputs["numerator"] == 80
    assert result.inputs["denominator"] == 200
    assert result.inputs["account_age_months"] == 9
    assert result.inputs["thresholds"] == "age ≥ 9 months: Red ≤ 75% · Green > 75%"


def test_licensed_seats_fall_back_to_the_pings_licensed_users():
    result = score(instance(licensed_seats=None, licensed_users=400, billable_users=100)).measures[
        "license_utilization"
    ]
    assert result.inputs["denominator"] == 400
    assert result.value == pytest.approx(0.25)


def test_instances_sharing_a_subscription_share_one_fallback_seat_count():
    card = score(
        instance(1, licensed_seats=None, licensed_users=300, billable_users=100),
        instance(2, licensed_seats=None, licensed_users=None, billable_users=50),
    )
    lu = card.measures["license_utilization"]
    assert lu.inputs["denominator"] == 300
    assert lu.value == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("customer_since", "months"),
    [
        (date(2025, 4, 15), 2),
        (date(2025, 4, 16), 1),
        (date(2024, 6, 15), 12),
        (date(2024, 6, 16), 11),
        (date(2025, 7, 1), 0),
        (None, None),
    ],
)
def test_account_age_counts_whole_months(customer_since, months):
    assert account_age_months(customer_since, AS_OF) == months


# --------------------------------------------------------------------------- NA reasons


@pytest.mark.parametrize(
    ("candidate", "key", "reason"),
    [
        (
            instance(version="13.12.0-ee", billable_users=None),
            "license_utilization",
            "billable users not available before 14.0",
        ),
        (
            instance(version="13.12.0-ee", billable_users=None),
            "scm_git_operations",
            "billable users not available before 14.0",
        ),
        (
            instance(version="14.5.0-ee", billable_users=None),
            "scm_git_operations",
            "billable users not reported",
        ),
        (instance(version="15.1.3-ee"), "user_engagement", "metric not available before 15.2"),
        (
            instance(is_saas=True, version=None),
            "user_engagement",
            "User Engagement is not measured for SaaS namespaces",
        ),
        (
            instance(plan="premium"),
            "devsecops_scanner_users",
            "Premium subscription: DevSecOps applies to Ultimate only",
        ),
        (
            instance(plan="premium"),
            "devsecops_scanners_in_use",
            "Premium subscription: DevSecOps applies to Ultimate only",
        ),
        (
            instance(ci_internal_pipelines_l28=0),
            "devsecops_scans_per_pipeline",
            "no internal pipelines in the last 28 days",
        ),
        (
            instance(successful_deployments_l28=0, failed_deployments_l28=0),
            "cd_deployment_success",
            "no deployments in the last 28 days",
        ),
        (
            instance(git_operation_users=None),
            "scm_git_operations",
            "git-operation users not reported",
        ),
        (
            instance(dast_scans_l28=None),
            "devsecops_scans_per_pipeline",
            "DAST scans (L28) not reported",
        ),
        (
            instance(licensed_seats=None, licensed_users=None),
            "license_utilization",
            "licensed seats not reported",
        ),
        (instance(billable_users=0), "ci_builds_per_user", "no billable users"),
    ],
)
def test_na_reasons(candidate, key, reason):
    result = score(candidate).measures[key]
    assert result.color == "NA"
    assert result.points is None
    assert result.reason == reason


@pytest.mark.parametrize("version", ["15.2.0-ee", "15.10.1-ee", "16.0.0-pre"])
def test_user_engagement_is_scored_from_15_2(version):
    assert score(instance(version=version)).measures["user_engagement"].color == "Green"


def test_devsecops_use_case_na_reason_on_premium():
    result = score(instance(plan="premium")).use_cases["devsecops"]
    assert result.color == "NA"
    assert result.value is None
    assert result.reason == "Premium subscription: DevSecOps applies to Ultimate only"


def test_devsecops_na_when_the_included_instance_is_premium_despite_ultimate_elsewhere():
    premium_production = instance(1, plan="premium", subscription_id=10)
    ultimate_staging = instance(
        2, plan="ultimate", subscription_id=11, instance_type="non_production"
    )
    ultimate_opted_out = instance(
        3, plan="ultimate", subscription_id=12, health_inclusion="opt_out"
    )
    card = score(premium_production, ultimate_staging, ultimate_opted_out)
    assert card.instance_ids == (1,)
    assert card.use_cases["devsecops"].color == "NA"
    assert card.use_cases["devsecops"].reason == (
        "Premium subscription: DevSecOps applies to Ultimate only"
    )
    assert card.measures["devsecops_scanner_users"].color == "NA"


def test_devsecops_scored_when_any_included_instance_is_ultimate():
    card = score(instance(1, plan="premium"), instance(2, plan="ultimate", subscription_id=11))
    assert card.measures["devsecops_scanner_users"].color == "Green"
    # ... over the Ultimate instance alone (methodology §3).
    assert card.measures["devsecops_scanner_users"].inputs["instance_ids"] == [2]


# --------------------------------------------------------------------------- instance selection


def test_multiple_included_instances_are_summed_with_a_warning():
    first = instance(
        1, subscription_id=10, licensed_seats=100, billable_users=60, git_operation_users=20
    )
    second = instance(
        2, subscription_id=11, licensed_seats=50, billable_users=40, git_operation_users=30
    )
    third = instance(
        3, subscription_id=10, licensed_seats=100, billable_users=0, git_operation_users=0
    )
    card = score(first, second, third)

    lu = card.measures["license_utilization"]
    assert lu.inputs["numerator"] == 100
    assert lu.inputs["denominator"] == 150  # subscription 10 counted once
    assert lu.inputs["subscription_ids"] == [10, 11]
    assert lu.value == pytest.approx(100 / 150)
    scm = card.measures["scm_git_operations"]
    assert (scm.inputs["numerator"], scm.inputs["denominator"]) == (50, 100)
    assert scm.value == pytest.approx(0.5)
    assert card.instance_ids == (1, 2, 3)
    assert card.ping_ids == (100, 200, 300)
    assert card.warnings == (
        "more than one instance in health measures (3); "
        "the handbook's best practice is exactly one",
    )


def test_one_null_metric_on_any_included_instance_makes_the_measure_na():
    card = score(instance(1), instance(2, subscription_id=11, git_operation_users=None))
    assert card.measures["scm_git_operations"].color == "NA"
    assert card.measures["ci_builds_per_user"].color == "Green"


def test_single_instance_has_no_warning():
    assert score(instance()).warnings == ()


@pytest.mark.parametrize(("days_ago", "included"), [(0, True), (60, True), (61, False)])
def test_ping_older_than_60_days_is_left_out(days_ago, included):
    card = score(instance(1, days_ago=days_ago), instance(2, subscription_id=11, days_ago=3))
    assert (1 in card.instance_ids) is included
    assert card.stale_instance_ids == (() if included else (1,))
    assert card.measures["license_utilization"].inputs["instance_ids"] == (
        [1, 2] if included else [2]
    )


def test_all_stale_instances_make_every_measure_na():
    card = score(instance(1, days_ago=61), instance(2, subscription_id=11, days_ago=90))
    assert card.instance_ids == ()
    assert card.stale_instance_ids == (1, 2)
    assert card.as_of is None
    assert {m.reason for m in card.measures.values()} == {"no data for 60 days"}
    assert {m.color for m in card.measures.values()} == {"NA"}
    assert card.product_usage.color == "NA"
    assert card.product_usage.reason == "no data for 60 days"
    assert card.overall_health.color == "NA"
    assert card.health_score_value is None
    assert card.adoption_count is None


@pytest.mark.parametrize(
    ("candidates", "reason"),
    [
        ((), "no Production instance"),
        ((instance(instance_type="unknown"),), "no Production instance"),
        ((instance(health_inclusion="opt_out"),), "no Production instance"),
        ((instance(days_ago=None),), "no usage ping received"),
        ((instance(days_ago=None), instance(2, days_ago=70)), "no data for 60 days"),
    ],
)
def test_selection_na_reasons(candidates, reason):
    selection = select_instances(candidates, as_of=AS_OF, scheme=get_scheme(HANDBOOK))
    assert selection.included == ()
    assert selection.na_reason == reason
    assert score(*candidates).measures["license_utilization"].reason == reason


@pytest.mark.parametrize(
    ("instance_type", "health_inclusion"),
    [
        ("unknown", ""),
        ("non_production", ""),
        ("non_production", "included"),
        ("obsolete", ""),
        ("geo_secondary", ""),
        ("production", "opt_out"),
    ],
)
def test_only_non_opted_out_production_instances_count(instance_type, health_inclusion):
    other = instance(
        2, instance_type=instance_type, health_inclusion=health_inclusion, billable_users=1
    )
    card = score(instance(1, billable_users=500), other)
    assert card.instance_ids == (1,)
    assert card.measures["license_utilization"].inputs["numerator"] == 500
    assert card.warnings == ()


@pytest.mark.parametrize("health_inclusion", ["", "included"])
def test_included_and_automatic_production_instances_count(health_inclusion):
    assert score(instance(health_inclusion=health_inclusion)).instance_ids == (1,)


def test_saas_namespace_counts_as_production():
    card = score(instance(is_saas=True, instance_type="unknown", version=None))
    assert card.instance_ids == (1,)
    assert card.measures["scm_git_operations"].color == "Green"


def test_as_of_is_the_newest_ping_used():
    card = score(instance(1, days_ago=20), instance(2, subscription_id=11, days_ago=5))
    assert card.as_of == AS_OF - timedelta(days=5)
    assert card.computed_for == AS_OF


# --------------------------------------------------------------------------- roll-ups


def test_handbook_roll_up_example():
    value, color = roll_up([62.5, 87.5, 62.5], get_scheme(HANDBOOK))
    assert value == pytest.approx(70.8333, abs=1e-4)
    assert round(value, 2) == 70.83
    assert color == "Yellow"


@pytest.mark.parametrize(
    ("points", "value", "color"),
    [
        ([50], 50, "Red"),
        ([50.01], 50.01, "Yellow"),
        ([75], 75, "Yellow"),
        ([75.01], 75.01, "Green"),
        ([None, 88, None], 88, "Green"),
        ([25, None, 63], 44, "Red"),
        ([None, None], None, "NA"),
        ([], None, "NA"),
    ],
)
def test_roll_up_bands_and_na(points, value, color):
    for scheme in PRESETS.values():
        got_value, got_color = roll_up(points, scheme)
        assert got_color == color
        assert got_value == (None if value is None else pytest.approx(value))


def test_use_case_is_the_mean_of_its_measures_points():
    # CD: deployment users Yellow (63), deployments per user Green (88), success Yellow (63).
    card = score(
        instance(
            deployment_users=100,
            deployments_l28=8000,
            successful_deployments_l28=500,
            failed_deployments_l28=500,
        )
    )
    cd = card.use_cases["cd"]
    assert cd.value == pytest.approx((63 + 88 + 63) / 3)
    assert cd.points == cd.value
    assert cd.color == "Yellow"
    assert cd.inputs["measure_points"] == {
        "cd_deployment_users": 63,
        "cd_deployments_per_user": 88,
        "cd_deployment_success": 63,
    }


def test_use_case_ignores_na_measures():
    card = score(
        instance(successful_deployments_l28=0, failed_deployments_l28=0, deployment_users=10)
    )
    cd = card.use_cases["cd"]
    assert cd.value == pytest.approx((25 + 88) / 2)
    assert cd.color == "Yellow"


def mixed_instance() -> InstanceCandidate:
    """LU Red 25, UE NA (15.1), SCM Green 88, CI Yellow 63, CD Green 88, DevSecOps NA (Premium)."""
    return instance(
        version="15.1.0-ee",
        plan="premium",
        billable_users=400,
        licensed_seats=1000,
        git_operation_users=200,
        ci_builds_l28=4000,
    )


def test_product_usage_weights_are_renormalised_over_scored_use_cases():
    card = score(mixed_instance())
    assert [
        card.measures["license_utilization"].color,
        card.use_cases["scm"].color,
        card.use_cases["ci"].color,
        card.use_cases["cd"].color,
    ] == ["Red", "Green", "Yellow", "Green"]
    product = card.product_usage
    assert product.value == pytest.approx((30 * 25 + 15 * 88 + 15 * 63 + 15 * 88) / 75)
    assert product.value == pytest.approx(57.8)
    assert product.color == "Yellow"
    assert product.inputs["weights_used"] == pytest.approx(
        {"license_utilization": 0.4, "scm": 0.2, "ci": 0.2, "cd": 0.2}
    )
    assert product.inputs["component_points"]["devsecops"] is None
    assert product.inputs["component_points"]["user_engagement"] is None
    # With no sentiment and no other groups, overall health is product usage alone.
    assert card.overall_health.value == pytest.approx(57.8)
    assert card.overall_health.inputs["weights_used"] == {"product_usage": 1.0}


def test_overall_health_weights_product_usage_and_sentiment():
    card = score(instance(), sentiment="Yellow", sentiment_date=AS_OF - timedelta(days=10))
    product = card.product_usage.value
    assert card.overall_health.value == pytest.approx((50 * product + 25 * 63) / 75)
    assert card.health_score_value == card.overall_health.value


def test_legacy_scheme_weights_sentiment_twice_product_usage():
    card = score(instance(), scheme=LEGACY, sentiment="Green", sentiment_date=AS_OF)
    product = card.product_usage.value
    assert card.overall_health.value == pytest.approx((25 * product + 50 * 88) / 75)
    assert card.product_usage.inputs["weights_used"]["license_utilization"] == pytest.approx(0.4)
    assert "user_engagement" not in card.product_usage.inputs["weights_used"]


def test_red_sentiment_forces_red_overall_despite_green_product_usage():
    card = score(instance(), sentiment="Red", sentiment_date=AS_OF - timedelta(days=5))
    assert card.product_usage.color == "Green"
    assert card.overall_health.value == pytest.approx(
        (50 * card.product_usage.value + 25 * 25) / 75
    )
    assert card.overall_health.value == pytest.approx(67.0)  # the bands alone say Yellow
    assert card.overall_health.color == "Red"
    assert card.overall_health.inputs["forced_red_by_sentiment"] is True
    assert card.overall_health.reason == "Red CSM sentiment forces Red overall"


def test_non_red_sentiment_leaves_the_overall_colour_to_the_bands():
    # Product usage 57.8 (see above) and Green sentiment 88 → 67.87, Yellow.
    card = score(
        mixed_instance(),
        sentiment="Green",
        sentiment_date=AS_OF,
    )
    assert card.overall_health.value == pytest.approx((50 * 57.8 + 25 * 88) / 75)
    assert card.overall_health.color == "Yellow"
    assert card.overall_health.reason is None
    assert card.overall_health.inputs["forced_red_by_sentiment"] is False


@pytest.mark.parametrize(
    ("age_days", "color", "stale", "reason"),
    [
        (0, "Yellow", False, None),
        (90, "Yellow", False, None),
        (91, "Yellow", True, "CSM sentiment is 91 days old (stale after 90)"),
        (120, "Yellow", True, "CSM sentiment is 120 days old (stale after 90)"),
        (121, "NA", False, "CSM sentiment is 121 days old (NA after 120)"),
    ],
)
def test_sentiment_is_stale_after_90_days_and_na_after_120(age_days, color, stale, reason):
    card = score(instance(), sentiment="Yellow", sentiment_date=AS_OF - timedelta(days=age_days))
    sentiment = card.csm_sentiment
    assert sentiment.color == color
    assert sentiment.points == (63 if color == "Yellow" else None)
    assert sentiment.inputs["stale"] is stale
    assert sentiment.inputs["age_days"] == age_days
    assert sentiment.reason == reason
    expected_groups = {"product_usage", "csm_sentiment"} if color != "NA" else {"product_usage"}
    assert set(card.overall_health.inputs["weights_used"]) == expected_groups


def test_stale_red_sentiment_past_120_days_no_longer_forces_red():
    card = score(instance(), sentiment="Red", sentiment_date=AS_OF - timedelta(days=121))
    assert card.csm_sentiment.color == "NA"
    assert card.overall_health.color == "Green"


def test_unset_sentiment_is_na():
    sentiment = score(instance()).csm_sentiment
    assert (sentiment.color, sentiment.reason) == ("NA", "CSM sentiment not set")


def test_sentiment_alone_scores_overall_when_there_is_no_production_instance():
    card = score(sentiment="Green", sentiment_date=AS_OF)
    assert card.product_usage.color == "NA"
    assert card.overall_health.value == 88
    assert card.overall_health.color == "Green"


def test_adoption_count_counts_green_use_cases():
    # SCM Green, CI Red, CD Green (defaults), DevSecOps NA.
    card = score(instance(plan="premium", ci_builds_l28=100))
    assert [card.use_cases[uc].color for uc in ("scm", "ci", "cd", "devsecops")] == [
        "Green",
        "Red",
        "Green",
        "NA",
    ]
    assert card.adoption_count == 2


def test_adoption_count_is_zero_when_all_scored_red():
    card = score(instance(billable_users=100_000, **dict.fromkeys(SCAN_METRICS, 0)))
    assert {uc.color for uc in card.use_cases.values()} == {"Red"}
    assert card.adoption_count == 0


def test_adoption_count_is_none_when_all_use_cases_na():
    card = score(instance(instance_type="obsolete"))
    assert {uc.color for uc in card.use_cases.values()} == {"NA"}
    assert card.adoption_count is None


# --------------------------------------------------------------------------- output


def test_scorecard_round_trips_through_json():
    card = score(
        instance(1),
        instance(2, subscription_id=11, days_ago=70),
        sentiment="Green",
        sentiment_date=AS_OF,
    )
    restored = Scorecard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert restored == card
    assert restored.as_of == AS_OF - timedelta(days=7)
    assert restored.stale_instance_ids == (2,)


def test_api_health_payload_shape_and_types():
    card = score(
        instance(licensed_seats=200, billable_users=80),
        customer_since=months_before(9),
        sentiment="Green",
        sentiment_date=AS_OF,
    )
    payload = api_health_payload(card, crm_account_id="0016000000ABC")
    assert list(payload) == HEALTH_API_FIELDS
    assert payload["crm_account_id"] == "0016000000ABC"
    assert payload["as_of"] == (AS_OF - timedelta(days=7)).isoformat()
    assert payload["scheme"] == "gitlab-handbook-2025@2"
    assert list(payload["measures"]) == HEALTH_API_MEASURES
    for measure in payload["measures"].values():
        assert list(measure) == ["color", "value", "reason"]
        assert measure["color"] in {"Red", "Yellow", "Green", "NA"}
        assert measure["value"] is None or isinstance(measure["value"], int | float)
        assert measure["reason"] is None or isinstance(measure["reason"], str)
    assert payload["measures"]["license_utilization"] == {
        "color": "Red",
        "value": pytest.approx(0.4),
        "reason": None,
    }
    assert payload["measures"]["scm"]["value"] == 88
    assert payload["measures"]["csm_sentiment"] == {"color": "Green", "value": 88, "reason": None}
    assert payload["health_score_value"] == pytest.approx(card.overall_health.value)
    assert 0 <= payload["health_score_value"] <= 100
    assert isinstance(payload["adoption_count"], int)
    assert json.loads(json.dumps(payload)) == payload


def test_api_health_payload_nulls_without_data():
    payload = api_health_payload(score(), crm_account_id="X")
    assert payload["as_of"] is None
    assert payload["health_score_value"] is None
    assert payload["adoption_count"] is None
    assert payload["measures"]["overall_health"] == {
        "color": "NA",
        "value": None,
        "reason": "no product usage or CSM sentiment data",
    }
    assert payload["measures"]["license_utilization"]["reason"] == "no Production instance"


# --------------------------------------------------------------------------- stored monthly totals


def test_totals_sum_only_the_instances_the_scorecard_used():
    prod = instance(1, billable_users=120, ci_builds_l28=900)
    second = instance(2, billable_users=30, ci_builds_l28=100)
    other = instance(3, instance_type="non_production", billable_users=5000, ci_builds_l28=7)
    inputs = company(prod, second, other)
    card = score_company(inputs, get_scheme(HANDBOOK))
    assert set(card.instance_ids) == {1, 2}
    totals = included_totals(inputs, card, ("billable_users", "ci_builds_l28"))
    assert totals == {"billable_users": 150, "ci_builds_l28": 1000}


def test_a_total_is_unknown_when_any_scored_instance_did_not_report_it():
    inputs = company(instance(1, deployments_l28=None), instance(2, deployments_l28=4))
    card = score_company(inputs, get_scheme(HANDBOOK))
    totals = included_totals(inputs, card, ("deployments_l28", "umau"))
    assert totals["deployments_l28"] is None
    assert totals["umau"] == 2 * healthy_metrics()["umau"]


def test_no_scored_instance_means_no_totals():
    inputs = company(instance(1, instance_type="unknown", billable_users=10))
    card = score_company(inputs, get_scheme(HANDBOOK))
    assert card.instance_ids == ()
    assert included_totals(inputs, card, ("billable_users",)) == {"billable_users": None}
