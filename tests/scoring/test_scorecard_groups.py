"""The rest of GitLab's overall scorecard: Outcomes (ROI), Voice of the customer (support
tickets) and Engagement (meeting cadence and personas), each at its edges, and how they weigh
in overall health. Pure: no database."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from scoring.overall import score_engagement, score_outcomes, score_voice
from scoring.schemes import get_scheme
from tests.scoring.test_methodology import AS_OF, HANDBOOK, instance, score

SCHEME = get_scheme(HANDBOOK)
DEV, SEC = "Dev Lead", "Security Lead"


@pytest.mark.parametrize("roi", ["Red", "Yellow", "Green"])
def test_outcomes_is_the_success_plans_roi(roi):
    result = score_outcomes(roi, scheme=SCHEME)
    assert (result.color, result.points) == (roi, SCHEME.color_points[roi])


@pytest.mark.parametrize(
    ("roi", "owned", "reason"),
    [(None, True, "no success-plan ROI recorded"), ("Green", False, "not a CSM-owned account")],
)
def test_outcomes_na(roi, owned, reason):
    result = score_outcomes(roi, scheme=SCHEME, csm_owned=owned)
    assert (result.color, result.reason, result.points) == ("NA", reason, None)


@pytest.mark.parametrize(
    ("tickets", "color"),
    [(0, "Green"), (1, "Green"), (5, "Green"), (6, "Yellow"), (15, "Yellow"), (16, "Red")],
)
def test_voice_of_the_customer_bands(tickets, color):
    month = date(AS_OF.year, AS_OF.month, 1)
    assert score_voice((month, tickets), as_of=AS_OF, scheme=SCHEME).color == color


@pytest.mark.parametrize(("days_after_month", "na"), [(30, False), (31, True)])
def test_voice_is_na_after_30_days_without_data(days_after_month, na):
    month = date(2025, 4, 1)  # ends 30 April
    as_of = date(2025, 4, 30) + timedelta(days=days_after_month)
    result = score_voice((month, 3), as_of=as_of, scheme=SCHEME)
    assert (result.color == "NA") is na
    if na:
        assert result.reason == "no support-ticket data for 31 days (NA after 30)"


def test_voice_without_any_month_is_na():
    assert score_voice(None, as_of=AS_OF, scheme=SCHEME).reason == "no support tickets recorded"


def _met(days_ago: int, *personas: str):
    return (AS_OF - timedelta(days=days_ago), frozenset(personas))


@pytest.mark.parametrize(
    ("prioritization", "days", "color"),
    [(1, 35, "Green"), (1, 36, "Yellow"), (1, 60, "Yellow"), (1, 61, "Red")]
    + [(2, 65, "Green"), (2, 66, "Yellow"), (2, 90, "Yellow"), (2, 91, "Red")],
)
def test_meeting_cadence_by_prioritization(prioritization, days, color):
    result = score_engagement(
        [_met(days, DEV, SEC)], prioritization=prioritization, as_of=AS_OF, scheme=SCHEME
    )
    assert result.inputs["parts"]["meeting_cadence"] == color


@pytest.mark.parametrize(
    ("meetings", "color"),
    [
        ([_met(10, DEV), _met(80, SEC)], "Green"),  # both within 3 months
        ([_met(10, DEV), _met(91, SEC)], "Yellow"),  # the Security Lead too long ago
        ([_met(10, "Champion")], "Red"),
    ],
)
def test_persona_engagement_within_three_months(meetings, color):
    result = score_engagement(meetings, prioritization=1, as_of=AS_OF, scheme=SCHEME)
    assert result.inputs["parts"]["persona_engagement"] == color


def test_engagement_is_the_even_mean_of_its_two_parts():
    result = score_engagement([_met(10, DEV)], prioritization=1, as_of=AS_OF, scheme=SCHEME)
    # Cadence Green (88), personas Yellow (63): 75.5 → Green (> 75).
    assert result.value == pytest.approx(75.5) and result.color == "Green"


def test_engagement_without_a_cadence_target_scores_the_personas_alone():
    result = score_engagement([_met(10, DEV, SEC)], prioritization=3, as_of=AS_OF, scheme=SCHEME)
    assert result.inputs["parts"] == {"persona_engagement": "Green"}
    assert result.reason == "no meeting cadence for this prioritization"
    assert result.value == SCHEME.color_points["Green"]


@pytest.mark.parametrize(
    ("meetings", "owned", "reason"),
    [([], True, "no meetings recorded"), ([_met(1, DEV)], False, "not a CSM-owned account")],
)
def test_engagement_na(meetings, owned, reason):
    result = score_engagement(
        meetings, prioritization=1, as_of=AS_OF, scheme=SCHEME, csm_owned=owned
    )
    assert (result.color, result.reason) == ("NA", reason)


def test_a_meeting_after_the_scoring_date_does_not_count():
    future = [(AS_OF + timedelta(days=1), frozenset({DEV, SEC}))]
    result = score_engagement(future, prioritization=1, as_of=AS_OF, scheme=SCHEME)
    assert result.color == "NA"


def test_overall_health_weighs_every_group_that_has_data():
    card = score(
        instance(),
        sentiment="Green",
        sentiment_date=AS_OF,
        roi="Red",
        tickets=(date(AS_OF.year, AS_OF.month, 1), 20),
        prioritization=1,
        meetings=(_met(5, DEV, SEC),),
    )
    groups = card.groups
    assert [groups[k].color for k in ("outcomes", "voice_of_customer", "engagement")] == [
        "Red",
        "Red",
        "Green",
    ]
    weights = card.overall_health.inputs["weights_used"]
    assert set(weights) == {
        "product_usage",
        "csm_sentiment",
        "outcomes",
        "voice_of_customer",
        "engagement",
    }
    expected = (
        card.product_usage.value * 50 + 88 * 25 + 25 * 10 + 25 * 5 + groups["engagement"].value * 10
    ) / 100
    assert card.overall_health.value == pytest.approx(expected)


def test_without_their_data_the_groups_are_left_out_as_before():
    card = score(instance(), sentiment="Green", sentiment_date=AS_OF)
    assert all(g.color == "NA" for g in card.groups.values())
    assert set(card.overall_health.inputs["weights_used"]) == {"product_usage", "csm_sentiment"}


def test_a_scorecard_round_trips_with_its_groups_and_reads_older_ones_without():
    from scoring.scorecard import Scorecard

    card = score(instance(), roi="Yellow")
    again = Scorecard.from_dict(card.to_dict())
    assert again.groups["outcomes"].color == "Yellow"
    older = card.to_dict()
    del older["groups"]
    assert Scorecard.from_dict(older).groups == {}
