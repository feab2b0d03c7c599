"""The dashboard as a CSM sees it on a laptop and on a phone, and the error pages, in Chromium."""

from __future__ import annotations

import pytest

from accounts.models import TableColumns
from tests.conftest import login

pytestmark = pytest.mark.browser

WRAP = ".table-block .table-wrap"


def _sign_in(page, username: str, *, width: int = 1440, height: int = 900) -> None:
    page.set_viewport_size({"width": width, "height": height})
    login(page, username, "demo")
    page.goto(f"{page.base_url}/?csm=")


def _headers(page) -> list[str]:
    return [
        " ".join(t.split()).rstrip(" ↕▲▼")
        for t in page.locator(f"{WRAP} thead th").all_inner_texts()
    ]


@pytest.mark.parametrize("width", [1366, 1440])
def test_the_default_columns_fit_a_laptop_screen(page, demo, transactional_db, width):
    _sign_in(page, "csm1", width=width)
    fits = page.evaluate(
        """(sel) => { const wrap = document.querySelector(sel);
           return [wrap.querySelector('table').scrollWidth, wrap.clientWidth]; }""",
        WRAP,
    )
    assert fits[0] <= fits[1], fits
    headers = _headers(page)
    assert {"Account", "Overall health", "Last ping", "Unknown"} <= set(headers), headers
    last = page.locator(f"{WRAP} thead th").last.bounding_box()
    assert last["x"] + last["width"] <= width  # on screen, not past the edge


def test_the_account_column_and_the_header_stay_put(page, demo, transactional_db):
    # Narrower and shorter than the table: it scrolls both ways inside its region.
    _sign_in(page, "ops", width=1100, height=420)
    wrap = page.locator(WRAP)
    wrap.scroll_into_view_if_needed()
    scrolled = page.evaluate(
        """(sel) => { const w = document.querySelector(sel); w.scrollLeft = 400; w.scrollTop = 150;
           return [w.scrollLeft, w.scrollTop]; }""",
        WRAP,
    )
    assert scrolled[0] > 0 and scrolled[1] > 0, scrolled
    box = wrap.bounding_box()
    account = page.locator(f"{WRAP} tbody td.account").nth(8).bounding_box()
    header = page.locator(f"{WRAP} thead th").nth(4).bounding_box()
    assert abs(account["x"] - box["x"]) <= 2  # the account column did not scroll away
    assert abs(header["y"] - box["y"]) <= 2  # nor did the header row


def test_chosen_columns_last_across_a_reload_and_a_new_sign_in(
    page, browser, demo, live_server, transactional_db
):
    _sign_in(page, "csm2")
    chooser = page.locator(".column-chooser")
    chooser.locator("summary").click()
    chooser.get_by_label("CSM", exact=True).uncheck()
    chooser.get_by_label("Segment", exact=True).check()
    chooser.get_by_label("Billable users", exact=True).check()
    chooser.get_by_role("button", name="Show these columns").click()
    page.wait_for_load_state("networkidle")
    expected = ["Segment", "Billable users"]
    seen = _headers(page)
    assert "CSM" not in seen and all(h in seen for h in expected), seen
    page.reload()
    seen = _headers(page)
    assert "CSM" not in seen and all(h in seen for h in expected), seen
    assert TableColumns.objects.get(user__username="csm2").columns[:2] == [
        "segment",
        "billable_users",
    ]
    other = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        fresh = other.new_page()
        fresh.base_url = live_server.url
        _sign_in(fresh, "csm2")
        seen = _headers(fresh)
        assert "CSM" not in seen and all(h in seen for h in expected), seen
    finally:
        other.close()


def test_on_a_phone_each_account_shows_its_health_colours(page, demo, transactional_db):
    _sign_in(page, "viewer", width=390, height=844)
    row = page.locator(f"{WRAP} tbody tr").first
    row.scroll_into_view_if_needed()
    account = row.locator("td.account a")
    assert account.is_visible()
    pills = row.locator("td.health .pill")
    assert pills.count() == 8  # License Utilization, five use cases, product usage, overall
    for i in range(pills.count()):
        box = pills.nth(i).bounding_box()
        assert pills.nth(i).is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= 390
    label = row.locator("td.overall").evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Overall health"'  # each colour is named on the card
    assert not row.locator("td").nth(1).is_visible()  # the CSM is left for wider screens
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390


def test_a_refusal_page_says_why_in_the_layout(page, demo, transactional_db):
    _sign_in(page, "csm1")
    response = page.goto(f"{page.base_url}/data-quality/licenses/1/map/")
    assert response.status == 403
    assert "Only Customer Success Operations can map licenses." in page.locator("main").inner_text()
    assert page.locator("nav.sidenav").is_visible()
    page.locator("main a.button", has_text="Product Usage Reporting").click()
    assert page.locator("h1").inner_text() == "Product Usage Reporting"
