"""The Account C360 pages in a real browser: charts drawn, the ⋮ → Edit workflow, refusals.

Screenshots of every section at 1280 and 390 px are written to /tmp/c360_<section>_<width>.png.
"""

from __future__ import annotations

import re

import pytest

from accounts.models import Company
from instances.models import Instance, LabelChange
from tests.conftest import login

pytestmark = pytest.mark.browser

SECTIONS = {
    "summary": ("/accounts/{pk}/", "Summary", False),
    "scorecard": ("/accounts/{pk}/scorecard/", "Scorecard", False),
    "adoption": ("/accounts/{pk}/adoption/?report=git_billable", "User Adoption Metrics", True),
    "trends": ("/accounts/{pk}/trends/?report=ci", "Product Usage Trends", True),
    "license": ("/accounts/{pk}/trends/?report=license", "Product Usage Trends", True),
    "not_production": (
        "/accounts/{pk}/trends/?report=not_production",
        "Product Usage Trends",
        True,
    ),
    "instances": ("/accounts/{pk}/instances/", "Instance and Namespace Details", False),
}


@pytest.fixture
def acme(transactional_db, demo) -> Company:
    """csm1's Strategic account with several instances, two of them in health measures."""
    return Company.objects.get(name="Acme Robotics")


def _open(page, path: str, *, charts: bool) -> None:
    page.goto(f"{page.base_url}{path}")
    page.wait_for_load_state("networkidle")
    if charts:
        page.wait_for_selector("[data-plotly-figure] svg.main-svg")


def _assert_charts_drawn(page) -> None:
    charts = page.locator("[data-plotly-figure]")
    assert charts.count() >= 1
    for n in range(charts.count()):
        chart = charts.nth(n)
        assert chart.get_attribute("data-rendered") == "true"
        assert chart.locator("svg.main-svg").count() >= 1
        assert chart.locator(".xtick").count() >= 2  # month ticks drawn


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def test_every_section_draws_for_every_role_and_fits_both_widths(page, acme):
    for username in ("ops", "csm1", "viewer"):
        page.context.clear_cookies()
        login(page, username, "demo")
        for name, (path, heading, charts) in SECTIONS.items():
            _open(page, path.format(pk=acme.pk), charts=charts)
            assert page.locator("h1").inner_text() == heading, (username, name)
            assert "Acme Robotics" in page.locator(".topbar-context").inner_text()
            if charts:
                _assert_charts_drawn(page)
                assert "data as of" in page.locator(".chart-title").first.inner_text()
            if username == "csm1":
                for width in (1280, 390):
                    page.set_viewport_size({"width": width, "height": 900})
                    page.wait_for_timeout(350)  # Plotly re-lays out on resize
                    assert _no_horizontal_scroll(page), (name, width)
                    page.screenshot(path=f"/tmp/c360_{name}_{width}.png", full_page=True)
                page.set_viewport_size({"width": 1280, "height": 900})


def test_not_production_report_for_one_instance(page, acme):
    login(page, "csm1", "demo")
    staging = Instance.objects.get(company=acme, instance_type="non_production")
    _open(page, f"/accounts/{acme.pk}/trends/?report=not_production", charts=True)
    page.get_by_role("link", name=f"Usage of {staging}").click()
    page.wait_for_selector("[data-plotly-figure] svg.main-svg")
    assert f"instance={staging.pk}" in page.url
    assert str(staging) in page.locator("h2").first.inner_text()
    _assert_charts_drawn(page)
    assert page.locator("[data-plotly-figure]").count() == 2


def test_csm_labels_an_instance_through_the_row_menu(page, acme):
    login(page, "csm1", "demo")
    staging = Instance.objects.get(company=acme, instance_type="non_production")
    _open(page, f"/accounts/{acme.pk}/instances/", charts=False)
    row = page.locator(f"#instance-{staging.pk}")

    menu = row.locator("details.row-menu > summary")
    menu.focus()
    page.keyboard.press("Enter")  # the ⋮ menu opens from the keyboard
    assert row.locator("details.row-menu").get_attribute("open") is not None
    page.keyboard.press("Escape")
    assert row.locator("details.row-menu").get_attribute("open") is None

    menu.click()
    with page.expect_navigation():  # ⋮ → Edit opens the instance's edit page
        row.get_by_role("link", name="Edit", exact=True).click()
    assert f"/instances/{staging.pk}/edit/" in page.url
    page.get_by_label("Instance Type").select_option("obsolete")
    with page.expect_navigation():  # and Update comes back to the instances page
        page.get_by_role("button", name="Update").click()
    assert page.url.endswith(f"/accounts/{acme.pk}/instances/#instance-{staging.pk}")

    message = page.locator(".messages").inner_text()
    assert "Non-Production → Obsolete recorded" in message
    assert re.search(r"Reflected in reports at \d{1,2} \w{3} \d{4} \d\d:\d\d UTC", message)
    change = LabelChange.objects.get(instance=staging, status="pending")
    row = page.locator(f"#instance-{staging.pk}")
    pending = row.locator(".pending-note")
    assert "Pending" in pending.inner_text() and "Obsolete" in pending.inner_text()
    assert f"{change.effective_at:%-d %b %Y %H:%M} UTC" in pending.inner_text()
    assert "Non-Production" in row.locator("td[data-label='Instance Type'] .type").inner_text()
    staging.refresh_from_db()
    assert staging.instance_type == "non_production"  # applied only after the refresh delay
    assert page.locator(".apply-now-form").count() == 0  # apply-now is for ops

    # The same workflow with the keyboard only: opt the second Production instance out.
    assert page.get_by_test_id("multiple-health-warning").count() == 1
    eu = Instance.objects.get(company=acme, hostname__startswith="gitlab-eu.")
    page.locator(f"#instance-{eu.pk} details.row-menu > summary").focus()
    for key in ("Enter", "Tab"):  # ⋮, Edit
        page.keyboard.press(key)
    with page.expect_navigation():
        page.keyboard.press("Enter")  # the edit page, its first field focused
    assert page.evaluate("document.activeElement.name") == "instance_type"
    page.keyboard.press("Tab")  # Health
    assert page.evaluate("document.activeElement.name") == "health_inclusion"
    page.keyboard.press("ArrowDown")  # Automatic → Included
    page.keyboard.press("ArrowDown")  # → Opt-Out
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Update
    assert LabelChange.objects.filter(
        instance=eu, field="health_inclusion", new_value="opt_out", status="pending"
    ).exists()
    warning = page.get_by_test_id("multiple-health-warning").inner_text()
    assert "Once the pending changes take effect: 1 instance" in warning
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path="/tmp/c360_instances_pending_1280.png", full_page=True)


def test_ops_applies_a_pending_change_now(page, acme):
    change = LabelChange.objects.pending().select_related("instance").first()
    company = change.instance.company
    login(page, "ops", "demo")
    _open(page, f"/accounts/{company.pk}/instances/", charts=False)
    row = page.locator(f"#instance-{change.instance_id}")
    with page.expect_navigation():
        row.get_by_role("button", name=re.compile("Apply now")).click()
    assert "is now" in page.locator(".messages").inner_text()
    change.refresh_from_db()
    assert (change.status, change.applied_via) == ("applied", "apply_now")
    assert page.locator(f"#instance-{change.instance_id} .pending-note").count() == 0


def test_csm_sets_sentiment_on_the_summary(page, acme):
    login(page, "csm1", "demo")
    _open(page, f"/accounts/{acme.pk}/", charts=False)
    # Sentiment, then the success plan's ROI (Outcomes) beside it, the same way.
    for section, colour, note, button, said in (
        ("#sentiment", "Yellow", "Champion left; rebuilding.", "Save sentiment", "CSM sentiment"),
        ("#roi", "Green", "All three objectives met at the QBR.", "Save ROI", "Success-plan ROI"),
    ):
        card = page.locator(section)
        card.get_by_label(colour).check()
        card.get_by_label("Note").fill(note)
        with page.expect_navigation():
            page.get_by_role("button", name=button).click()
        assert f"{said} set to {colour}" in page.locator(".messages").inner_text()
        assert note in page.locator(section).inner_text()
    acme.refresh_from_db()
    assert (acme.sentiment, acme.roi) == ("Yellow", "Green")


def test_viewer_gets_no_edit_controls_and_forged_posts_are_refused(page, acme):
    login(page, "viewer", "demo")
    instance = Instance.objects.filter(company=acme).first()
    pending = LabelChange.objects.pending().first()
    _open(page, f"/accounts/{acme.pk}/instances/", charts=False)
    assert page.locator("form.label-form").count() == 0
    assert page.locator("details.row-menu-edit").count() == 0
    assert page.locator(".row-menu").get_by_role("link", name="Edit", exact=True).count() == 0
    assert page.locator(f"a[href*='/instances/{instance.pk}/edit/']").count() == 0
    assert page.get_by_role("button", name=re.compile("Apply now")).count() == 0
    _open(page, f"/accounts/{acme.pk}/", charts=False)
    assert page.locator("form.sentiment-form").count() == 0

    headers = {"X-CSRFToken": _csrf(page), "Referer": page.url}
    forged = {
        f"/accounts/{acme.pk}/instances/{instance.pk}/edit/": {"instance_type": "obsolete"},
        f"/accounts/{acme.pk}/sentiment/": {"sentiment": "Red", "note": "forged"},
        f"/label-changes/{pending.pk}/apply/": {},
    }
    for path, data in forged.items():
        response = page.request.post(f"{page.base_url}{path}", form=data, headers=headers)
        assert response.status == 403, path
    instance.refresh_from_db()
    acme.refresh_from_db()
    pending.refresh_from_db()
    assert instance.instance_type != "obsolete" and acme.sentiment != "Red"
    assert pending.status == "pending"
    assert not LabelChange.objects.filter(instance=instance, new_value="obsolete").exists()
