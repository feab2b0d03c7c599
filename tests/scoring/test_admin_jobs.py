"""Long admin actions run in the background: the request records a job and answers at once.

Switching the scoring scheme and "recompute every company" used to run in the admin request
(20 s and more on a real book, past a proxy's timeout). Now the request records an ``AdminJob``
(with the switch itself and its audit event, in one transaction), publishes its task after the
commit, and sends ops to a progress page that polls a JSON status; the worker writes progress
after each chunk. The row is the durable record: with the broker down the job waits, queued,
and the beat sweep publishes it again. A run is idempotent (a killed worker's redelivery, a
duplicate message, a retry), and one job at a time holds "every company".
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditAction, AuditEvent
from scoring import services, tasks
from scoring.models import (
    AdminJob,
    AdminJobKind,
    AdminJobState,
    MonthlyScore,
    SchemeChange,
    ScoreSnapshot,
)
from scoring.services import (
    ADMIN_JOB_MAX_ATTEMPTS,
    ADMIN_JOB_STALE,
    AdminJobBusy,
    active_scheme,
    admin_job_run,
    admin_job_start,
    admin_jobs_lost,
    companies_refresh,
)
from tests.celery_support import DEAD_BROKER, publishing_to, queued_messages
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db

RECOMPUTE_URL = "/admin/scoring/adminjob/recompute/"


@pytest.fixture
def memory_broker():
    """A broker that takes messages and runs nothing: what the request publishes stays there."""
    with publishing_to("memory://") as app:
        yield app


@pytest.fixture
def book():
    """Three accounts scored from one ping each; then a newer ping each, not scored yet."""
    instances = []
    for _ in range(3):
        sub = SubscriptionFactory(licensed_seats=200)
        instance = InstanceFactory(subscription=sub, company=sub.company)
        store_ping(instance, days_ago=8, metrics={"billable_users": 80}, refresh=False)
        instances.append(instance)
    companies_refresh(company_ids=[i.company_id for i in instances])
    for instance in instances:
        store_ping(instance, days_ago=1, metrics={"billable_users": 150}, refresh=False)
    return instances


def users_scored(book) -> list[int | None]:
    """Each account's billable users in its current snapshot (80: old, 150: recomputed)."""
    current = dict(
        ScoreSnapshot.objects.filter(is_current=True).values_list("company_id", "billable_users")
    )
    return [current.get(i.company_id) for i in book]


def progress_url(job: AdminJob) -> str:
    return reverse("admin:scoring_adminjob_progress", args=[job.pk])


def status_url(job: AdminJob) -> str:
    return reverse("admin:scoring_adminjob_status", args=[job.pk])


def snapshot_id(book) -> str:
    return str(ScoreSnapshot.objects.filter(company_id=book[0].company_id).first().pk)


def recompute_action(client, book):
    """The score snapshots' admin action "recompute every company"."""
    return client.post(
        "/admin/scoring/scoresnapshot/",
        {"action": "recompute", "_selected_action": [snapshot_id(book)]},
    )


def start_recompute(client, book, how: str):
    return recompute_action(client, book) if how == "action" else client.post(RECOMPUTE_URL)


# --------------------------------------------------------------------------------------------------
# The request records and queues; it does not compute


@pytest.mark.parametrize("how", ["action", "button"])
def test_recompute_answers_with_the_progress_page_and_only_queues_the_task(
    client, ops, book, memory_broker, monkeypatch, django_capture_on_commit_callbacks, how
):
    ran = []
    monkeypatch.setattr(services, "companies_recompute_all", lambda **kw: ran.append(kw))
    client.force_login(ops)

    with django_capture_on_commit_callbacks(execute=True):
        response = start_recompute(client, book, how)

    job = AdminJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == progress_url(job)
    assert (job.kind, job.state, job.requested_by) == (AdminJobKind.RECOMPUTE_ALL, "queued", ops)
    assert ran == [] and users_scored(book) == [80, 80, 80]  # nothing computed in the request
    messages = queued_messages()
    assert [(name, args) for name, _id, args in messages] == [
        ("scoring.tasks.run_admin_job", [job.pk])
    ]


def test_the_queued_message_run_by_a_worker_recomputes_every_account(
    client, ops, book, memory_broker, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(RECOMPUTE_URL)
    [(name, task_id, args)] = queued_messages()

    tasks.run_admin_job.apply(args=args, task_id=task_id)  # what the worker does with it

    job = AdminJob.objects.get()
    assert (job.state, job.done_count, job.total, job.run_id) == ("done", 3, 3, task_id)
    assert job.message == "Recomputed 3 accounts."
    assert job.started_at <= job.finished_at
    assert users_scored(book) == [150, 150, 150]


def test_with_the_broker_down_the_job_waits_queued_and_the_sweep_runs_it(
    client, ops, book, django_capture_on_commit_callbacks, caplog
):
    client.force_login(ops)
    with publishing_to(DEAD_BROKER), django_capture_on_commit_callbacks(execute=True):
        response = client.post(RECOMPUTE_URL)  # no exception: the publish is best-effort

    job = AdminJob.objects.get()
    assert response.status_code == 302 and response["Location"] == progress_url(job)
    assert job.state == "queued" and users_scored(book) == [80, 80, 80]
    assert "the sweep will publish it again" in caplog.text
    # A young queued job is most likely on its way: the sweep leaves it alone...
    assert admin_jobs_lost(older_than=dt.timedelta(seconds=120)) == []

    # ...and publishes it again once it is older than the sweep's age (the broker is back).
    tasks.refresh_sweep.apply(kwargs={"older_than_seconds": 0})

    job.refresh_from_db()
    assert (job.state, job.done_count, job.total) == ("done", 3, 3)
    assert users_scored(book) == [150, 150, 150]


def test_with_eager_celery_the_job_ends_done_in_the_request(
    client, ops, book, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        response = recompute_action(client, book)

    job = AdminJob.objects.get()
    assert response["Location"] == progress_url(job)
    assert (job.state, job.done_count, job.total) == ("done", 3, 3)
    assert users_scored(book) == [150, 150, 150]
    page = client.get(progress_url(job)).content.decode()
    assert "Recomputed 3 accounts." in page and "requested by ops_user" in page


def test_progress_is_one_update_per_chunk(book, ops, monkeypatch):
    monkeypatch.setattr(services, "CHUNK", 2)  # 3 accounts: two chunks
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    seen = []
    real = services.companies_recompute_all

    def watched(**kwargs):
        progress = kwargs.pop("progress")

        def spy(done, total):
            progress(done, total)
            seen.append(AdminJob.objects.values_list("done_count", "total").get(pk=job.pk))

        return real(progress=spy, **kwargs)

    monkeypatch.setattr(services, "companies_recompute_all", watched)
    with CaptureQueriesContext(connection) as queries:
        assert admin_job_run(job.pk, run_id="run-1") == "done"

    assert seen == [(0, 3), (2, 3), (3, 3)]
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "scoring_adminjob"')]
    assert len(updates) == 1 + 3 + 1  # the claim, the total and each chunk, the end


# --------------------------------------------------------------------------------------------------
# Switching the scheme


def test_the_scheme_switch_is_recorded_at_once_and_rescored_by_the_worker(
    client, ops, book, memory_broker, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/scoring/scoringconfig/add/",
            {"scheme": "gitlab-dbt-2024", "rebuild_history": "on"},
        )

    job = AdminJob.objects.get()
    assert response.status_code == 302 and response["Location"] == progress_url(job)
    assert job.kind == AdminJobKind.SCHEME_SWITCH and job.state == "queued"
    assert job.arguments == {"scheme": "gitlab-dbt-2024", "rebuild_history": True}
    # The switch, its change record and its audit event committed with the job...
    assert active_scheme().name == "gitlab-dbt-2024"
    change = SchemeChange.objects.get()
    assert (change.to_scheme, change.changed_by, change.rebuilt_history) == (
        "gitlab-dbt-2024",
        ops,
        True,
    )
    event = AuditEvent.objects.get(action=AuditAction.SCHEME_SWITCHED)
    assert event.actor == ops and event.detail["to"] == "gitlab-dbt-2024"
    # ...the scores did not move in the request.
    current = ScoreSnapshot.objects.filter(is_current=True)
    assert not current.filter(scheme__startswith="gitlab-dbt-2024").exists()

    [(_name, task_id, args)] = queued_messages()
    tasks.run_admin_job.apply(args=args, task_id=task_id)

    job.refresh_from_db()
    assert (job.state, job.done_count, job.total) == ("done", 3, 3)
    assert (
        job.message
        == "Switched to gitlab-dbt-2024: 3 accounts recomputed, monthly history rebuilt."
    )
    assert all(s.startswith("gitlab-dbt-2024") for s in current.values_list("scheme", flat=True))
    assert current.count() == 3
    months = MonthlyScore.objects.values_list("scheme", flat=True)
    assert months and all(s.startswith("gitlab-dbt-2024") for s in months)


def test_an_unknown_scheme_records_nothing(ops):
    with pytest.raises(KeyError):
        admin_job_start(kind=AdminJobKind.SCHEME_SWITCH, by=ops, arguments={"scheme": "nope"})
    assert not AdminJob.objects.exists() and not SchemeChange.objects.exists()


# --------------------------------------------------------------------------------------------------
# The progress page and its JSON status


STATUS_KEYS = {
    "id",
    "kind",
    "kind_label",
    "state",
    "state_label",
    "finished",
    "done",
    "total",
    "percent",
    "text",
    "detail",
    "requested_by",
    "requested_at",
    "started_at",
    "finished_at",
    "message",
    "error",
}


def test_the_status_says_how_far_a_running_job_got(client, ops):
    job = AdminJob.objects.create(
        kind=AdminJobKind.RECOMPUTE_ALL,
        requested_by=ops,
        state=AdminJobState.RUNNING,
        started_at=timezone.now(),
        done_count=1234,
        total=5000,
    )
    client.force_login(ops)

    response = client.get(status_url(job))

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    status = response.json()
    assert set(status) == STATUS_KEYS
    assert status["text"] == "Recomputing 1,234 of 5,000 accounts…"
    assert (status["state"], status["finished"], status["done"], status["total"]) == (
        "running",
        False,
        1234,
        5000,
    )
    assert status["percent"] == 25 and status["requested_by"] == "ops_user"
    assert status["finished_at"] is None and status["error"] == ""

    page = client.get(progress_url(job)).content.decode()
    assert "Recomputing 1,234 of 5,000 accounts…" in page
    assert 'max="5000" value="1234"' in page
    assert f'data-status-url="{status_url(job)}"' in page
    assert "js/admin_job.js" in page
    # Without script, the page reloads itself until the job has finished.
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page


def test_a_finished_job_says_when_and_by_whom_and_stops_refreshing(client, ops, book):
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    admin_job_run(job.pk, run_id="run-1")
    client.force_login(ops)

    status = client.get(status_url(job)).json()
    page = client.get(progress_url(job)).content.decode()

    assert (status["state"], status["finished"], status["percent"]) == ("done", True, 100)
    assert status["text"] == "Recomputed 3 accounts."
    assert status["detail"].startswith("Finished ") and "requested by ops_user" in status["detail"]
    assert status["finished_at"] is not None
    assert status["text"] in page and 'http-equiv="refresh"' not in page


def test_a_failed_job_shows_its_error(client, ops, book, monkeypatch):
    def broken(**kwargs):
        kwargs["progress"](0, 3)
        raise ValueError("the engine broke")

    monkeypatch.setattr(services, "companies_recompute_all", broken)
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)

    with pytest.raises(ValueError):  # eager tasks propagate; a worker logs it
        tasks.run_admin_job.apply(args=[job.pk], task_id="run-1")

    job.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert job.error == "ValueError: the engine broke"
    client.force_login(ops)
    status = client.get(status_url(job)).json()
    assert (status["state"], status["finished"], status["text"]) == ("failed", True, "Failed.")
    assert status["error"] == "ValueError: the engine broke"
    assert "ValueError: the engine broke" in client.get(progress_url(job)).content.decode()
    # A failed job no longer holds the target: the next one may start.
    assert admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops).state == "queued"


def test_an_unknown_job_is_404(client, ops):
    client.force_login(ops)
    assert client.get("/admin/scoring/adminjob/999999/status/").status_code == 404
    assert client.get("/admin/scoring/adminjob/999999/progress/").status_code == 404


# --------------------------------------------------------------------------------------------------
# Who may


@pytest.mark.parametrize("role", ["viewer", "csm"])
def test_csms_and_viewers_can_neither_follow_nor_start_a_job(
    client, request, role, book, django_capture_on_commit_callbacks
):
    job = AdminJob.objects.create(kind=AdminJobKind.RECOMPUTE_ALL, state=AdminJobState.DONE)
    client.force_login(request.getfixturevalue(role))

    assert client.get(progress_url(job)).status_code == 403
    assert client.get(status_url(job)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(RECOMPUTE_URL).status_code == 403
        # The admin's own pages send them to its sign-in page.
        action = recompute_action(client, book)
        switch = client.post("/admin/scoring/scoringconfig/add/", {"scheme": "gitlab-dbt-2024"})
    assert action.status_code == 302 and action["Location"].startswith("/admin/login/")
    assert switch.status_code == 302 and switch["Location"].startswith("/admin/login/")
    assert list(AdminJob.objects.values_list("pk", flat=True)) == [job.pk]
    assert not SchemeChange.objects.exists() and users_scored(book) == [80, 80, 80]


def test_nobody_signed_in_meets_the_sign_in_page(client):
    job = AdminJob.objects.create(kind=AdminJobKind.RECOMPUTE_ALL)
    for url in (progress_url(job), status_url(job)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    assert client.post(RECOMPUTE_URL)["Location"].startswith("/login/?next=")
    assert AdminJob.objects.count() == 1


def test_the_start_url_takes_only_a_post(client, ops):
    client.force_login(ops)
    assert client.get(RECOMPUTE_URL).status_code == 405
    assert not AdminJob.objects.exists()


# --------------------------------------------------------------------------------------------------
# One job at a time


def test_a_second_request_while_one_is_queued_is_refused_with_its_page(
    client, ops, book, memory_broker, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(RECOMPUTE_URL)
    first = AdminJob.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(RECOMPUTE_URL)
        action = recompute_action(client, book)

    assert again.status_code == 302 and again["Location"] == progress_url(first)
    assert action.status_code == 302 and action["Location"] == progress_url(first)
    assert AdminJob.objects.count() == 1
    assert len(queued_messages()) == 1  # the first job's message only
    page = client.get(progress_url(first)).content.decode()
    assert "Recompute every company is already queued (requested by ops_user" in page


def test_a_scheme_switch_while_a_job_runs_is_refused_on_the_form(client, ops, book):
    AdminJob.objects.create(
        kind=AdminJobKind.RECOMPUTE_ALL, requested_by=ops, state=AdminJobState.RUNNING
    )
    client.force_login(ops)

    response = client.post(
        "/admin/scoring/scoringconfig/add/", {"scheme": "gitlab-dbt-2024", "rebuild_history": "on"}
    )

    assert response.status_code == 200  # the form again, with the reason
    assert "Recompute every company is already running" in response.content.decode()
    assert AdminJob.objects.count() == 1 and not SchemeChange.objects.exists()
    assert active_scheme().name != "gitlab-dbt-2024"


def test_two_requests_racing_past_the_check_meet_the_constraint(ops, monkeypatch):
    """The check before the insert is for the message; the database decides the race."""
    admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    real_active = AdminJob.objects.active
    calls = []

    def active_missing_the_first_time(*args, **kwargs):
        calls.append(1)
        return AdminJob.objects.none() if len(calls) == 1 else real_active(*args, **kwargs)

    monkeypatch.setattr(AdminJob.objects, "active", active_missing_the_first_time)

    with pytest.raises(AdminJobBusy) as refused:
        admin_job_start(
            kind=AdminJobKind.SCHEME_SWITCH,
            by=ops,
            arguments={"scheme": "gitlab-dbt-2024", "rebuild_history": False},
        )

    assert refused.value.job.kind == AdminJobKind.RECOMPUTE_ALL
    assert AdminJob.objects.count() == 1
    assert not SchemeChange.objects.exists()  # the switch rolled back with its job
    assert not AuditEvent.objects.filter(action=AuditAction.SCHEME_SWITCHED).exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        AdminJob.objects.create(kind=AdminJobKind.RECOMPUTE_ALL, state=AdminJobState.RUNNING)


# --------------------------------------------------------------------------------------------------
# Idempotent runs: redelivery after a kill, duplicates, lost workers


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs, not even on_failure."""


def test_a_run_killed_mid_way_and_delivered_again_ends_done_once(ops, book, monkeypatch):
    monkeypatch.setattr(services, "CHUNK", 2)
    job = admin_job_start(
        kind=AdminJobKind.SCHEME_SWITCH,
        by=ops,
        arguments={"scheme": "gitlab-dbt-2024", "rebuild_history": False},
    )
    real = services.companies_recompute_all

    def killed_after_the_first_chunk(**kwargs):
        progress = kwargs.pop("progress")

        def then_die(done, total):
            progress(done, total)
            if done == 2:
                raise WorkerKilled

        return real(progress=then_die, **kwargs)

    monkeypatch.setattr(services, "companies_recompute_all", killed_after_the_first_chunk)
    with pytest.raises(WorkerKilled):
        tasks.run_admin_job.apply(args=[job.pk], task_id="delivery-1")
    job.refresh_from_db()
    assert (job.state, job.done_count, job.total, job.attempts) == ("running", 2, 3, 1)

    # reject_on_worker_lost: the same message (same task id) is delivered again.
    monkeypatch.setattr(services, "companies_recompute_all", real)
    tasks.run_admin_job.apply(args=[job.pk], task_id="delivery-1")
    job.refresh_from_db()
    assert (job.state, job.done_count, job.total, job.attempts) == ("done", 3, 3, 2)
    finished = job.finished_at

    # A duplicate (the sweep's, or a redelivery racing the first) finds it done: nothing runs.
    tasks.run_admin_job.apply(args=[job.pk], task_id="delivery-1")
    tasks.run_admin_job.apply(args=[job.pk], task_id="delivery-2")
    job.refresh_from_db()
    assert (job.state, job.finished_at, job.attempts, job.run_id) == (
        "done",
        finished,
        2,
        "delivery-1",
    )
    assert SchemeChange.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.SCHEME_SWITCHED).count() == 1
    assert (
        ScoreSnapshot.objects.filter(is_current=True, scheme__startswith="gitlab-dbt").count() == 3
    )


def test_a_duplicate_message_does_not_take_a_job_another_run_holds(ops, book):
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    AdminJob.objects.filter(pk=job.pk).update(
        state=AdminJobState.RUNNING, run_id="the-holder", heartbeat_at=timezone.now()
    )

    assert admin_job_run(job.pk, run_id="a-duplicate") == "running"

    job.refresh_from_db()
    assert (job.run_id, job.done_count) == ("the-holder", 0)
    assert users_scored(book) == [80, 80, 80]


def test_a_running_job_gone_silent_is_queued_again_and_its_old_run_stops(ops, book, monkeypatch):
    monkeypatch.setattr(services, "CHUNK", 2)
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    real = services.companies_recompute_all

    def the_sweep_requeues_it_meanwhile(**kwargs):
        progress = kwargs.pop("progress")

        def slow(done, total):
            if done == 2:  # the worker went silent past ADMIN_JOB_STALE...
                AdminJob.objects.filter(pk=job.pk).update(
                    heartbeat_at=timezone.now() - ADMIN_JOB_STALE - dt.timedelta(seconds=1)
                )
                assert admin_jobs_lost(older_than=dt.timedelta(seconds=120)) == [job.pk]
            progress(done, total)  # ...and finds at its next chunk it no longer holds the job

        return real(progress=slow, **kwargs)

    monkeypatch.setattr(services, "companies_recompute_all", the_sweep_requeues_it_meanwhile)
    assert admin_job_run(job.pk, run_id="slow-run") == "queued"
    job.refresh_from_db()
    assert (job.state, job.run_id) == ("queued", "")

    monkeypatch.setattr(services, "companies_recompute_all", real)
    assert admin_job_run(job.pk, run_id="next-run") == "done"
    job.refresh_from_db()
    assert (job.state, job.done_count, job.attempts) == ("done", 3, 2)


def test_a_job_lost_too_often_is_failed_not_delivered_for_ever(ops, book):
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    AdminJob.objects.filter(pk=job.pk).update(attempts=ADMIN_JOB_MAX_ATTEMPTS)

    assert admin_job_run(job.pk, run_id="one-more") == "failed"

    job.refresh_from_db()
    assert job.state == "failed" and "Gave up after 3 attempts" in job.error
    assert users_scored(book) == [80, 80, 80]


def test_a_celery_retry_of_a_run_is_not_a_new_attempt(ops, book):
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)
    AdminJob.objects.filter(pk=job.pk).update(
        state=AdminJobState.RUNNING, run_id="run-1", attempts=ADMIN_JOB_MAX_ATTEMPTS
    )

    assert admin_job_run(job.pk, run_id="run-1", retry=True) == "done"
    assert AdminJob.objects.get(pk=job.pk).attempts == ADMIN_JOB_MAX_ATTEMPTS


def test_a_job_whose_retries_are_spent_is_marked_failed_by_the_task(ops, book, monkeypatch):
    """A database error is retried (each retry the same run, holding the job); once the
    retries are spent, the worker's failure handler says so instead of leaving it running."""
    calls = []

    def database_away(**kwargs):
        calls.append(AdminJob.objects.values_list("state", "run_id").get())
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "companies_recompute_all", database_away)
    # As a worker runs it: the failure handled (on_failure), not raised to the caller; an eager
    # retry runs at once.
    monkeypatch.setattr(tasks.run_admin_job.app.conf, "task_eager_propagates", False)
    job = admin_job_start(kind=AdminJobKind.RECOMPUTE_ALL, by=ops)

    result = tasks.run_admin_job.apply(args=[job.pk], task_id="run-1")

    assert result.failed()
    assert calls == [("running", "run-1")] * (1 + tasks.RETRY["max_retries"])
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("failed", 1)  # a retry is not a new attempt
    assert job.error.startswith("OperationalError: server closed the connection")
