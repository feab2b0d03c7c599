"""Times in the reader's zone, in a real browser: Chromium set to New York sends its zone
(static/js/timezone.js) from the sign-in page on, so the first page already reads in New
York time with no choice made; choosing Asia/Tokyo on the profile page moves every time there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from accounts.models import Company, UserPreferences
from instances.labels import label_change_request
from instances.models import LabelChange
from tests.conftest import login
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.browser

REQUESTED = datetime(2026, 1, 15, 17, 5, tzinfo=UTC)


@pytest.fixture
def instance(transactional_db, csm):
    cache.clear()
    sub = SubscriptionFactory(company__csm=csm, company__name="Zone Inc")
    instance = InstanceFactory(subscription=sub, instance_type="unknown")
    store_ping(instance, days_ago=3, refresh=False)
    change = label_change_request(
        instance=instance, field="instance_type", value="production", by=csm, schedule=False
    )
    LabelChange.objects.filter(pk=change.pk).update(
        requested_at=REQUESTED, effective_at=REQUESTED + timedelta(hours=24)
    )
    Company.objects.filter(pk=sub.company_id).touch()
    return instance


@pytest.fixture
def new_york_page(browser, live_server):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/New_York"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.base_url = live_server.url
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()


def _requested_cell(page) -> str:
    return page.locator('.card td[data-label="Requested"]').first.inner_text()


def test_times_follow_the_browsers_zone_until_the_profile_chooses_one(new_york_page, instance, csm):
    page = new_york_page
    login(page, csm.username)
    assert {c["name"]: c["value"] for c in page.context.cookies()}["tz"] == "America/New_York"

    edit = f"{page.base_url}/accounts/{instance.company_id}/instances/{instance.pk}/edit/"
    page.goto(edit)
    assert _requested_cell(page) == "15 Jan 2026 12:05 EST"
    assert "16 Jan 2026 12:05 EST" in page.locator(".pending-note").inner_text()

    page.click("a.user-name")  # the user menu
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "Your profile"
    select = page.locator("#id_time_zone")
    assert (
        select.locator("option:checked").inner_text() == "Use my browser's zone (America/New_York)"
    )
    assert "America/New_York" in page.get_by_test_id("reader-zone").inner_text()

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=f"/tmp/profile_{width}.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size({"width": 1280, "height": 900})

    select.select_option("Asia/Tokyo")
    page.click("form.card button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "Times are now shown in Asia/Tokyo." in page.locator(".messages").inner_text()
    assert page.locator("#id_time_zone option:checked").inner_text() == "Tokyo"
    assert UserPreferences.time_zone_of(csm) == "Asia/Tokyo"

    page.goto(edit)
    assert _requested_cell(page) == "16 Jan 2026 02:05 JST"
    assert "17 Jan 2026 02:05 JST" in page.locator(".pending-note").inner_text()
    # The cached Instances section too, not only the edit page.
    page.goto(f"{page.base_url}/accounts/{instance.company_id}/instances/")
    assert "17 Jan 2026 02:05 JST" in page.locator(".pending-note").first.inner_text()
    assert not page.console_errors  # no CSP refusal, no script error
