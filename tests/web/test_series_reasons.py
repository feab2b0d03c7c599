"""A chart's month the pages compute themselves explains an NA as the engine would.

Ratios with no health measure behind them (e.g. pipeline users ÷ UMAU) are divided by the
page; their NA reasons must name metrics as the engine's reasons do (the registry's
``reason_label``), not a lower-cased page label.
"""

from __future__ import annotations

from datetime import date

import pytest

from scoring.schemes import METRICS, get_scheme
from usage_portal.web.c360 import catalogue, series
from usage_portal.web.c360.selectors import MonthlyHistory

MONTH = date(2026, 10, 1)
PIPELINE_UMAU = next(r for r in catalogue.ADOPTION_REPORTS if r.key == "pipeline_umau")


def _history(totals: dict) -> MonthlyHistory:
    card = {"instance_ids": [7], "measures": {}, "product_usage": {}}
    return MonthlyHistory(
        months=(MONTH,),
        scores={MONTH: {"detail": card, "totals": totals}},
        usage={},
        as_of=MONTH,
        scheme=get_scheme("gitlab-handbook-2025"),
    )


@pytest.mark.parametrize(
    ("totals", "reason"),
    [
        ({"pipeline_users": 5, "umau": None}, f"{METRICS['umau'].label} not reported"),
        ({"pipeline_users": None, "umau": 9}, f"{METRICS['pipeline_users'].label} not reported"),
        ({"pipeline_users": 5, "umau": 0}, f"no {METRICS['umau'].label}"),
    ],
)
def test_a_computed_ratio_names_the_missing_metric_as_the_engine_does(totals, reason):
    spec, rows = series.ratio_rows(_history(totals), PIPELINE_UMAU)
    assert spec is None  # no measure of the scheme computes this ratio: the page divides
    assert [(r.value, r.reason) for r in rows] == [(None, reason)]


def test_a_computed_ratio_with_both_parts_is_divided():
    _, rows = series.ratio_rows(_history({"pipeline_users": 5, "umau": 20}), PIPELINE_UMAU)
    assert [(r.value, r.reason) for r in rows] == [(0.25, None)]
