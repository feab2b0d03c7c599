"""The cross-account pages in a real browser, for each role, at desktop and phone widths.

Screenshots land in /tmp/reports_<page>_<width>.png for a person to look at.
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from accounts.models import Company, Subscription
from instances.models import License
from tests.conftest import login

pytestmark = pytest.mark.browser

PAGES = {
    "dashboard": ("/", "Product Usage Reporting"),
    "burndown": ("/burndown/", "CSM Burn-Down"),
    "versions": ("/reports/versions/", "Self Managed Instances – Current GitLab Version Details"),
    "data_quality": ("/data-quality/", "Data quality"),
    "metrics": ("/metrics/", "Metrics dictionary"),
}
WIDTHS = (1280, 390)


def _open(page, name: str, query: str = ""):
    path, heading = PAGES[name]
    page.goto(f"{page.base_url}{path}{query}")
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == heading
    return page


def _no_sideways_page_scroll(page) -> bool:
    """The page itself never scrolls sideways; wide tables scroll inside .table-wrap."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_every_role_opens_every_report(page, transactional_db, demo):
    for username in ("ops", "csm1", "viewer"):
        login(page, username, "demo")
        for name in PAGES:
            _open(page, name)
            current = page.locator('.sidenav a[aria-current="page"]')
            assert current.count() == 1
        page.context.clear_cookies()


def test_screenshots_at_desktop_and_phone_width(page, transactional_db, demo):
    login(page, "ops", "demo")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name in PAGES:
            query = "?csm=&older_than=6" if name == "versions" else ""
            _open(page, name, query)
            if name == "versions":
                page.wait_for_selector("#versions-chart svg.main-svg")
            assert _no_sideways_page_scroll(page), f"{name} overflows at {width}px"
            page.screenshot(path=f"/tmp/reports_{name}_{width}.png")


def test_csm_filters_sorts_and_exports_the_dashboard(page, transactional_db, demo):
    login(page, "csm1", "demo")
    _open(page, "dashboard")
    mine = Company.objects.filter(csm=demo)
    assert page.locator(".scope-tabs a[aria-current=page]").inner_text() == "My accounts"
    assert page.locator("table.table-dashboard tbody tr").count() == mine.count()

    with page.expect_navigation():
        page.click(".scope-tabs >> text=All accounts")
    assert page.locator("table.table-dashboard tbody tr").count() == Company.objects.count()

    page.select_option("#id_segment", "Strategic")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    strategic = Company.objects.filter(segment="Strategic").count()
    assert page.locator("table.table-dashboard tbody tr").count() == strategic

    with page.expect_navigation():
        page.click("th >> text=License utilization")
    header = page.locator("th", has_text="License utilization").first
    assert header.get_attribute("aria-sort") == "ascending"

    with page.expect_download() as download_info:
        page.click("text=Export CSV")
    with open(download_info.value.path(), encoding="utf-8") as fh:
        rows = list(csv.reader(io.StringIO(fh.read())))
    assert rows[0][0] == "Account" and len(rows) - 1 == strategic

    with page.expect_download() as download_info:
        page.click("text=Export XLSX")
    assert zipfile.is_zipfile(download_info.value.path())


def test_dashboard_is_usable_from_the_keyboard(page, transactional_db, demo):
    login(page, "viewer", "demo")
    _open(page, "dashboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    name = Company.objects.order_by("name").first().name
    page.focus("#id_q")
    page.keyboard.type(name)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    rows = page.locator("table.table-dashboard tbody tr")
    assert rows.count() >= 1 and name in rows.first.inner_text()
    # The table's scroll area can take focus, so it scrolls with the arrow keys.
    assert page.locator(".table-wrap").first.get_attribute("tabindex") == "0"


def test_burndown_links_to_the_not_production_report_and_the_edit_form(
    page, transactional_db, demo
):
    login(page, "csm1", "demo")
    _open(page, "burndown", "?csm=")
    first = page.locator("table.table-burndown tbody tr").first
    report = first.locator("a", has_text="Usage report").get_attribute("href")
    assert "/trends/?report=not_production&instance=" in report


def test_versions_chart_renders(page, transactional_db, demo):
    login(page, "viewer", "demo")
    _open(page, "versions", "?csm=")
    page.wait_for_selector("#versions-chart svg.main-svg")
    assert page.locator("#versions-chart").get_attribute("data-rendered") == "true"
    assert page.locator("table.table-versions tbody tr").count() >= 1


def test_ops_maps_a_license_from_the_data_quality_page(page, transactional_db, demo):
    license = License.objects.get(subscription__isnull=True)
    target = Subscription.objects.order_by("name").first()
    login(page, "ops", "demo")
    _open(page, "data_quality")
    form = page.locator(f'form[action$="/licenses/{license.pk}/map/"]')
    form.locator("input[name=subscription]").fill(target.name)
    with page.expect_navigation():
        form.locator("button").click()
    assert "attached" in page.locator(".messages").inner_text()
    license.refresh_from_db()
    assert license.subscription_id == target.pk


def test_viewers_see_no_map_form(page, transactional_db, demo):
    login(page, "viewer", "demo")
    _open(page, "data_quality")
    assert page.locator("form.map-form").count() == 0
    assert page.locator("#rejected-payloads").count() == 0
