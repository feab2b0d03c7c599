"""Every figure that leaves the portal carries at most the decimals docs/methodology.md documents.

The table under "Figures in exports and the API" is the contract; these tests read it, then
check the health API, the health CSV and the dashboard and report downloads of a seeded demo
book, where unrounded scores such as 83.37037037037037 occur.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
import tablib
from django.core.management import call_command

from accounts.models import Company
from scoring import scorecard
from scoring.models import ScoreSnapshot

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methodology.md"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")

#: Download column → documented field, per page.
DASHBOARD = {
    "License utilization (%)": "license_utilization_percent",
    "Product usage score": "product_usage_score",
    **dict.fromkeys(
        ("Licensed seats", "Billable users", "Production", "Non-Prod", "Unknown", "Other"), "count"
    ),
}
BURNDOWN = {
    "Share of account usage": "usage_share_percent",
    **dict.fromkeys(("Age (days)", "Billable users", "Monthly active users"), "count"),
}
VERSIONS = {"Releases behind": "count"}
HEALTH_CSV = {
    "[GS] Health Score Value": "health_score_value",
    "[GS] Use Case Adoption Count": "adoption_count",
}
#: Columns whose text looks like a number but is not a figure ("16.5" is a release).
TEXT_COLUMNS = frozenset({"Release", "Account ID", "CRM account id"})


def documented_precision() -> dict[str, int]:
    """Field → decimals, read from the methodology's table."""
    text = DOCS.read_text(encoding="utf-8")
    lines = text[text.index("**Figures in exports and the API.**") :].splitlines()
    found: dict[str, int] = {}
    in_table = False
    for line in lines:
        if line.startswith("|"):
            in_table = True
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if cells[0].startswith("`"):
                for name in re.findall(r"`([a-z_]+)`", cells[0]):
                    found[name] = int(cells[2])
        elif in_table:
            break
    assert found, "the precision table is missing from docs/methodology.md"
    return found


def decimals(value) -> int:
    if isinstance(value, int):
        return 0
    return max(0, -Decimal(repr(value) if isinstance(value, float) else value).as_tuple().exponent)


def too_precise(header, rows, columns: dict[str, str], precision: dict[str, int]) -> list:
    """(column, cell) for every figure with more decimals than documented.

    A numeric column the table does not name must hold whole numbers: a new column of figures
    is documented before it ships.
    """
    problems = []
    for row in rows:
        for name, cell in zip(header, row, strict=True):
            if name in TEXT_COLUMNS or isinstance(cell, bool):
                continue
            if isinstance(cell, str):
                if not NUMBER.match(cell):
                    continue
            elif not isinstance(cell, int | float):
                continue
            allowed = precision[columns[name]] if name in columns else 0
            if decimals(cell) > allowed:
                problems.append((name, cell))
    return problems


def csv_table(response) -> tuple[list, list]:
    rows = list(csv.reader(io.StringIO(response.getvalue().decode())))
    return rows[0], rows[1:]


def test_the_documented_table_is_the_one_the_code_applies():
    assert documented_precision() == scorecard.PRECISION


def test_figure_rounds_to_the_fields_decimals_and_keeps_none():
    figure = scorecard.figure
    assert figure("overall_health", 83.37037037037037) == 83.4
    assert figure("license_utilization", 0.6990291262135923) == 0.699
    assert figure("license_utilization_percent", 69.90291262135923) == 69.9
    assert scorecard.percent_figure("usage_share_percent", 0.8666666666666667) == 86.7
    assert scorecard.percent_figure("usage_share_percent", None) is None
    assert figure("adoption_count", 2) == 2 and isinstance(figure("adoption_count", 2.0), int)
    assert figure("health_score_value", None) is None
    with pytest.raises(KeyError):
        figure("not_a_documented_field", 1.5)


def test_the_health_api_rounds_every_figure_as_documented(client, demo):
    precision = documented_precision()
    snapshots = list(ScoreSnapshot.objects.filter(is_current=True).select_related("company"))
    # The demo book has the long figures the rounding is for.
    assert any(
        decimals(s.detail["overall_health"]["value"]) > precision["overall_health"]
        for s in snapshots
        if s.detail["overall_health"]["value"] is not None
    )
    client.force_login(demo)
    problems = []
    for snapshot in snapshots:
        body = client.get(f"/api/v1/accounts/{snapshot.company.crm_account_id}/health").json()
        stored = snapshot.detail
        figures = {key: measure["value"] for key, measure in body["measures"].items()}
        figures["health_score_value"] = body["health_score_value"]
        figures["adoption_count"] = body["adoption_count"]
        raw = {
            "user_engagement": stored["measures"]["user_engagement"]["value"],
            "overall_health": stored["overall_health"]["value"],
            "health_score_value": stored["health_score_value"],
        }
        for key, value in figures.items():
            if value is not None and decimals(value) > precision[key]:
                problems.append((snapshot.company.name, key, value))
        for key, value in raw.items():
            # Rounded to the nearest, not truncated or replaced.
            if value is not None:
                assert figures[key] == pytest.approx(value, abs=0.5 * 10 ** -precision[key])
    assert problems == []


def test_the_health_csv_rounds_every_figure_and_stays_formula_safe(client, demo):
    Company.objects.filter(pk=Company.objects.order_by("name").first().pk).update(
        name="=HYPERLINK(1)"
    )
    client.force_login(demo)
    header, rows = csv_table(client.get("/exports/health.csv"))
    assert len(rows) == ScoreSnapshot.objects.filter(is_current=True).count()
    assert too_precise(header, rows, HEALTH_CSV, documented_precision()) == []
    assert "'=HYPERLINK(1)" in [row[1] for row in rows]
    scores = [row[header.index("[GS] Health Score Value")] for row in rows]
    assert any("." in score for score in scores)  # rounded figures, not whole-number stand-ins


@pytest.mark.parametrize(
    ("url", "columns"),
    [
        ("/?csm=&_export=csv", DASHBOARD),
        ("/burndown/?csm=&_export=csv", BURNDOWN),
        ("/reports/versions/?csm=&_export=csv", VERSIONS),
    ],
)
def test_page_downloads_round_every_figure_as_documented(client, demo, url, columns):
    client.force_login(demo)
    header, rows = csv_table(client.get(url))
    assert rows
    assert set(columns) <= set(header)
    assert too_precise(header, rows, columns, documented_precision()) == []


@pytest.mark.parametrize(
    ("url", "columns"),
    [("/?csm=&_export=xlsx", DASHBOARD), ("/burndown/?csm=&_export=xlsx", BURNDOWN)],
)
def test_xlsx_downloads_round_every_figure_as_documented(client, demo, url, columns):
    client.force_login(demo)
    data = tablib.Dataset().load(client.get(url).getvalue(), format="xlsx")
    assert len(data)
    assert too_precise(data.headers, list(data), columns, documented_precision()) == []


def test_the_instance_type_export_carries_no_fractional_figures(demo, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path
    call_command("export_instance_types", stdout=io.StringIO())
    (path,) = tmp_path.glob("instance_types_*.csv")
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert len(rows) > 1
    assert too_precise(rows[0], rows[1:], {}, documented_precision()) == []
