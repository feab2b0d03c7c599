"""The admin's instance list as ops see it on a laptop: every column fits, no sideways scroll."""

from __future__ import annotations

import os

import pytest

from instances.models import Instance
from tests.conftest import login

pytestmark = pytest.mark.browser

SHOTS = os.environ.get("SHOTS_DIR", "/tmp/shots/reports")


def test_instance_list_fits_a_1440px_screen(page, transactional_db, demo):
    # The longest names the book can hold, so the check does not depend on the demo's.
    longest = Instance.objects.filter(kind="self-managed").order_by("pk").first()
    Instance.objects.filter(pk=longest.pk).update(
        hostname="gitlab-primary-production.eu-central-1.internal.example.com",
        version="16.11.10-ee",
        edition="EE Free",
    )
    page.set_viewport_size({"width": 1440, "height": 900})
    login(page, "ops", "demo")
    page.goto(f"{page.base_url}/admin/instances/instance/")
    page.wait_for_load_state("networkidle")
    assert page.locator("#result_list tbody tr").count() >= 10
    headers = page.locator("#result_list thead th").all_inner_texts()
    for column in ("Instance", "Company", "Type", "Version", "Last ping"):
        assert any(column.lower() in h.lower() for h in headers), headers
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/admin_instances_1440.png")
    sizes = page.evaluate(
        """() => {
            const results = document.querySelector('#changelist .results');
            const table = document.querySelector('#result_list');
            return {
                page: document.documentElement.scrollWidth,
                viewport: window.innerWidth,
                results: results.scrollWidth,
                resultsVisible: results.clientWidth,
                tableRight: table.getBoundingClientRect().right,
            };
        }"""
    )
    assert sizes["page"] <= sizes["viewport"], sizes
    assert sizes["results"] <= sizes["resultsVisible"], sizes
    assert sizes["tableRight"] <= sizes["viewport"], sizes
    # The last column is on screen, not behind a sideways scroll.
    last = page.locator("#result_list tbody tr").first.locator("td").last.bounding_box()
    assert last["x"] + last["width"] <= 1440
