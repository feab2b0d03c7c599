"""Ops start "recompute every company" in the admin and watch its progress page reach done.

The request only queues the job (Celery publishes to an in-memory broker here, as to Redis in a
deployment); the test then does what a worker does with the message. The page, loaded once,
follows the job by polling its JSON status (static/js/admin_job.js), under the
Content-Security-Policy, without a reload.
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from scoring import tasks
from scoring.models import AdminJob
from tests.celery_support import publishing_to, queued_messages
from tests.conftest import login, make_user
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.browser

SHOTS = os.environ.get("SHOTS_DIR", "/tmp/shots/reports")

WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.effectiveDirective + " blocked " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
def book(transactional_db):
    for _ in range(3):
        sub = SubscriptionFactory(licensed_seats=200)
        instance = InstanceFactory(subscription=sub, company=sub.company)
        store_ping(instance, days_ago=1, refresh=False)
    return make_user("ops_user", "Ops", staff=True)


def test_a_recompute_started_in_the_admin_is_followed_to_done(page, book):
    page.context.add_init_script(WATCH)
    login(page, "ops_user")
    with publishing_to("memory://"):
        page.goto(f"{page.base_url}/admin/scoring/adminjob/")
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/admin_jobs_list.png")
        page.get_by_role("button", name="Recompute every company").click()

        # The progress page, at once: the job waits for a worker.
        expect(page).to_have_url(re.compile(r"/admin/scoring/adminjob/\d+/progress/$"))
        text = page.locator('[data-job-field="text"]')
        expect(text).to_have_text("Waiting for a worker…")
        job = AdminJob.objects.get()
        assert job.state == "queued"
        page.evaluate("window.__loadedOnce = true")  # gone if the page reloads
        page.screenshot(path=f"{SHOTS}/admin_job_queued.png")

        # A worker takes the message the request published.
        [(name, task_id, args)] = queued_messages()
        assert (name, args) == ("scoring.tasks.run_admin_job", [job.pk])
        tasks.run_admin_job.apply(args=args, task_id=task_id)

        expect(text).to_have_text("Recomputed 3 accounts.", timeout=10_000)
    expect(page.locator('[data-job-field="state_label"]')).to_have_text("Done")
    expect(page.locator('[data-job-field="detail"]')).to_contain_text("requested by ops_user")
    bar = page.evaluate(
        "(() => { const p = document.querySelector('progress'); return [p.value, p.max]; })()"
    )
    assert bar == [3, 3]
    assert page.evaluate("window.__loadedOnce") is True  # followed by polling, not reloads
    assert page.evaluate("window.__cspViolations") == []
    page.screenshot(path=f"{SHOTS}/admin_job_done.png")
    assert AdminJob.objects.get().state == "done"
