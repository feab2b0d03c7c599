import pytest

from tests.conftest import login

pytestmark = pytest.mark.browser


def test_login_page_then_dashboard_in_a_real_browser(page, viewer, transactional_db):
    page.goto(f"{page.base_url}/")
    assert "/login/" in page.url  # anonymous users are sent to sign in
    login(page, "viewer_user")
    assert page.url.rstrip("/") == page.base_url
    assert page.locator("h1").inner_text() == "Product Usage Reporting"
    assert "viewer_user" in page.locator(".topbar-user").inner_text().lower()
