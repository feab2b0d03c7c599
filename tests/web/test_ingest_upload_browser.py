"""The upload page in a real browser: a CSM uploads a good and a bad file through the form."""

from __future__ import annotations

import orjson
import pytest

from instances.models import RejectedPayload, UsagePing
from tests.conftest import login
from tests.ingest_support import payload

pytestmark = pytest.mark.browser


def test_csm_uploads_a_good_and_a_bad_file_and_sees_a_result_per_file(
    page, csm, transactional_db, tmp_path
):
    good = tmp_path / "gitlab-acme-payload.json"
    good.write_bytes(orjson.dumps(payload(full_size=True)))
    bad = tmp_path / "truncated.json"
    bad.write_bytes(b'{"uuid": "5f0c2f4e", "recorded_at": ')

    login(page, "csm_user")
    page.click("text=Upload usage pings")  # reached from the navigation, as a CSM would
    assert page.url.endswith("/usage_data/new")
    page.set_input_files("input[type=file]", [str(good), str(bad)])
    page.click("button:has-text('Upload')")
    page.wait_for_selector("[data-testid=upload-results]")

    rows = page.locator("[data-testid=upload-result]")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "gitlab-acme-payload.json" in first and "stored" in first
    assert "gitlab.acme.example, version 16.5.1-ee" in first
    assert "truncated.json" in second and "rejected: malformed JSON" in second
    assert rows.nth(0).get_attribute("data-ok") == "true"
    assert rows.nth(1).get_attribute("data-ok") == "false"
    assert "1 of 2 file(s) stored or already present." in page.locator(".messages").inner_text()
    page.screenshot(path="/tmp/upload.png", full_page=True)

    assert UsagePing.objects.get().source == "upload"
    assert RejectedPayload.objects.get().filename == "truncated.json"
