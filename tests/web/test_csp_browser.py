"""The Content-Security-Policy as Chromium enforces it: every kind of page renders whole under it.

The page records each ``securitypolicyviolation`` event (an init script, which the policy does
not govern) and the console's CSP errors; a page passes with none of either and with what it
draws there: the charts' SVG, the mode bar's styles, the admin, the standalone error pages'
inline styles.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from accounts.models import Company
from tests.conftest import login

pytestmark = pytest.mark.browser

WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(
    e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " at " +
    (e.sourceFile || location.pathname) + ":" + e.lineNumber
  );
});
"""


@pytest.fixture
def watched(page):
    page.context.add_init_script(WATCH)
    page.csp_console = []
    page.on(
        "console",
        lambda message: (
            page.csp_console.append(message.text)
            if "Content Security Policy" in message.text or "strict CSP" in message.text
            else None
        ),
    )
    return page


def _open(page, path: str) -> list[str]:
    """Load ``path`` and return the violations it raised (the console's included)."""
    response = page.goto(f"{page.base_url}{path}")
    assert response is not None and "content-security-policy" in response.headers, path
    page.wait_for_load_state("networkidle")
    found = page.evaluate("window.__cspViolations") + page.csp_console
    page.csp_console.clear()
    return found


@pytest.fixture
def acme(transactional_db, demo) -> Company:
    return Company.objects.get(name="Acme Robotics")


def test_pages_charts_and_the_admin_render_under_the_policy(watched, acme):
    page = watched
    login(page, "ops", "demo")
    charted = {
        f"/accounts/{acme.pk}/trends/?report=ci",
        f"/accounts/{acme.pk}/adoption/",
        "/reports/versions/",
    }
    paths = ["/", f"/accounts/{acme.pk}/", *sorted(charted), "/admin/"]
    paths += ["/admin/accounts/company/", f"/admin/accounts/company/{acme.pk}/change/"]

    found = {}
    for path in paths:
        found[path] = _open(page, path)
        if path in charted:
            page.wait_for_selector("[data-plotly-figure][data-rendered] svg.main-svg")
        if path.startswith("/admin/"):
            assert page.locator("#site-name").count() == 1, path  # the admin, not its login

    assert found == {path: [] for path in paths}


def test_plotly_styles_apply_under_the_policy(watched, acme):
    """plotly.js's own rules (its empty <style>, filled through the CSSOM) are in force."""
    page = watched
    login(page, "csm1", "demo")
    assert _open(page, f"/accounts/{acme.pk}/trends/?report=ci") == []
    chart = page.locator("[data-plotly-figure][data-rendered]").first
    chart.wait_for()
    chart.locator(".nsewdrag").first.hover()
    modebar = chart.locator(".modebar").first
    modebar.wait_for(state="visible")

    # Rules that exist only in plotly's injected stylesheet: without it the mode bar is an
    # unstyled stack of buttons and the drag layer shows the default cursor.
    assert modebar.evaluate("e => getComputedStyle(e).position") == "absolute"
    assert chart.locator(".cursor-crosshair").first.evaluate("e => getComputedStyle(e).cursor") == (
        "crosshair"
    )
    assert page.evaluate("window.__cspViolations") == [] and page.csp_console == []


@pytest.mark.parametrize(
    ("error", "status"), [(OperationalError("the database is down"), 503), (RuntimeError, 500)]
)
def test_the_standalone_error_pages_keep_their_inline_styles(
    watched, monkeypatch, viewer, error, status
):
    page = watched
    login(page, "viewer_user")

    def fail(self):
        raise error

    monkeypatch.setattr("usage_portal.web.dashboard.views.DashboardView.get_queryset", fail)
    response = page.goto(f"{page.base_url}/")
    page.wait_for_load_state("networkidle")

    assert response.status == status
    assert "content-security-policy" in response.headers
    assert page.evaluate("window.__cspViolations") == [] and page.csp_console == []
    # The layout's inline <style> applied: its page colour and its card.
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 245, 250)"
    assert page.locator("main").evaluate("e => getComputedStyle(e).borderRadius") == "6px"
