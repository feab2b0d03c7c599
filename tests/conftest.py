"""Shared fixtures: people in each role, a small demo book, and a real browser."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

PASSWORD = "correct-horse-battery"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def make_user(username: str, role: str | None, *, staff: bool = False):
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=staff, first_name=username.title()
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def ops(db):
    return make_user("ops_user", "Ops", staff=True)


@pytest.fixture
def csm(db):
    return make_user("csm_user", "CSM")


@pytest.fixture
def other_csm(db):
    return make_user("other_csm", "CSM")


@pytest.fixture
def viewer(db):
    return make_user("viewer_user", "Viewer")


@pytest.fixture
def demo(db):
    """A small demo book (12 accounts, 20 weeks) loaded through the real ingest path.

    Users ops/csm1/csm2/csm3/viewer exist with password ``demo``.
    """
    call_command("seed_demo", companies=12, weeks=20, stdout=io.StringIO())
    return get_user_model().objects.get(username="csm1")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.base_url = live_server.url
    yield page
    context.close()


def login(page, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{page.base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.fixture(autouse=True)
def _integration_needs_real_services(request):
    """Integration tests fail, never skip, when PostgreSQL or Redis is missing."""
    if request.node.get_closest_marker("integration") is None:
        return
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            "integration tests need PostgreSQL: set DATABASE_URL (make test-integration does)"
        )
    if not settings.REDIS_URL:
        pytest.fail("integration tests need Redis: set REDIS_URL (make test-integration does)")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis at {settings.REDIS_URL} is not reachable: {exc}")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests create many users; the production hasher's work factor only slows them down."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
