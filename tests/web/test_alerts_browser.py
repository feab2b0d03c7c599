"""The health-drop worklist in a real browser: a CSM sees the drop on the account they own,
follows the C360 badge to it, closes it with a note. Screenshots: /tmp/alerts_<width>.png."""

from __future__ import annotations

import pytest

from scoring.models import HealthAlert
from tests.conftest import login
from tests.scoring.test_alerts import csm_owned_instance, ping_scored

pytestmark = pytest.mark.browser


@pytest.fixture
def drop(transactional_db, csm):
    instance = csm_owned_instance(csm, name="Globex Dropping")
    ping_scored(instance, 55, days_ago=1)  # LU Green → Red
    return HealthAlert.objects.get(company_id=instance.company_id)


def test_a_csm_follows_the_badge_and_closes_the_drop_with_a_note(page, drop, csm):
    login(page, csm.username)
    page.goto(f"{page.base_url}/accounts/{drop.company_id}/")
    page.click('[data-testid="drop-badge"]')
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text() == "Health drops"
    row = page.locator(f"#alert-{drop.pk}")
    assert "Globex Dropping" in row.inner_text() and "License Utilization" in row.inner_text()
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=f"/tmp/alerts_{width}.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size({"width": 1440, "height": 900})
    row.locator("input[name=note]").fill("Seats cut at renewal; champion confirmed")
    row.locator("button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    assert "Closed the License Utilization drop on Globex Dropping." in page.content()
    assert page.locator(f"#alert-{drop.pk}").count() == 0
    drop.refresh_from_db()
    assert drop.status == "closed" and drop.closed_by == csm
