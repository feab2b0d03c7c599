"""The full recompute fanned out as one task per chunk, and "nothing changed" made cheap.

A 50,000-account book took one worker process ~80 s to recompute (every input changed, the
daily case) and ~16 s to find that nothing had. Now the daily ``recompute_all`` plans the book
as chunks (``recompute_plan``) and publishes one ``recompute_chunk`` per chunk to the
``recompute`` queue, which the worker serves beside the refresh queue; completion is one row
per chunk in ``RecomputeRun`` (no result backend), which ``recompute_scores --all --fan-out``
waits on. Each chunk first checks which accounts changed from their inputs without the usage
figures (the hash reads only the ping's id), and says a chunk's ids as a range, not a list.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import shlex
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.changes import companies_changed
from accounts.models import Company
from instances.models import Instance
from scoring import services, tasks
from scoring.models import PendingRefresh, RecomputeChunk, RecomputeRun, ScoreSnapshot
from scoring.services import (
    active_scheme,
    companies_recompute_all,
    companies_refresh,
    inputs_hash,
    load_inputs,
    recompute_progress,
)
from tests.celery_support import publishing_to, queued_messages
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def book():
    """Seven accounts, each scored from one ping (one with no instance at all)."""
    instances = []
    for n in range(6):
        sub = SubscriptionFactory(licensed_seats=100)
        instance = InstanceFactory(subscription=sub, company=sub.company)
        store_ping(instance, days_ago=3, metrics={"billable_users": 50 + n}, refresh=False)
        instances.append(instance)
    bare = CompanyFactory()
    companies_refresh(company_ids=[i.company_id for i in instances] + [bare.pk])
    return instances


@pytest.fixture
def memory_broker():
    """A broker that takes messages and runs nothing: what is published stays there."""
    with publishing_to("memory://") as app:
        yield app


def current() -> dict[int, ScoreSnapshot]:
    return {s.company_id: s for s in ScoreSnapshot.objects.filter(is_current=True)}


def chunk_messages() -> list[tuple[list, dict]]:
    """Take the chunk tasks off the ``recompute`` queue: (args, kwargs) of each."""
    from usage_portal.celery import app

    found = []
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue("recompute")
        try:
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                assert message.headers["task"] == "scoring.tasks.recompute_chunk"
                args, kwargs, _embed = message.decode()
                found.append((args, kwargs))
                message.ack()
        finally:
            simple.close()
    return found


def run_messages(messages) -> None:
    """Run queued chunk tasks as a worker would (what they queue stays queued)."""
    for name, _task_id, args in messages:
        assert name == "scoring.tasks.recompute_chunk"
        tasks.recompute_chunk.apply(args=args).get()


def stale_everything() -> None:
    """Every account's current snapshot no longer matches its inputs (the bench's set-up)."""
    ScoreSnapshot.objects.filter(is_current=True).update(inputs_hash="")


# --- The plan and the fan-out ---------------------------------------------------------------


def test_the_fan_out_queues_one_chunk_task_per_chunk_covering_every_company_once(
    book, memory_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.recompute_fan_out(reason="daily", size=3)
    ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    messages = queued_messages("recompute")
    assert len(messages) == math.ceil(len(ids) / 3) == run.chunks == 3
    assert queued_messages("scoring") == []  # not in the refresh queue's way
    chunks = [args[0] for _name, _id, args in messages]
    assert sorted(i for chunk in chunks for i in chunk) == ids  # each company exactly once
    assert all(len(chunk) <= 3 for chunk in chunks)
    as_of = timezone.now().date().isoformat()
    assert {tuple(args[1:5]) for _n, _i, args in messages} == {("daily", False, as_of, run.pk)}
    assert sorted(args[5] for _n, _i, args in messages) == [0, 1, 2]
    assert (run.companies, RecomputeChunk.objects.filter(run=run).count()) == (len(ids), 3)
    assert recompute_progress(run.pk) == (0, 3, False)


def test_chunks_queued_by_the_fan_out_rescore_every_company_and_finish_the_run(
    book, memory_broker, django_capture_on_commit_callbacks
):
    stale_everything()
    before = current()
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.recompute_fan_out(reason="daily", size=3)
    messages = queued_messages("recompute")
    run_messages(messages[:-1])
    assert recompute_progress(run.pk) == (2, 3, False)  # not finished before its last chunk
    run_messages(messages[-1:])
    assert recompute_progress(run.pk) == (3, 3, True)
    after = current()
    assert after.keys() == before.keys() and len(after) == 7
    for company_id, snapshot in after.items():
        assert snapshot.pk != before[company_id].pk and snapshot.reason == "daily"
        assert snapshot.inputs_hash  # matches its inputs again
    assert RecomputeRun.objects.get(pk=run.pk).finished_at is not None


def test_a_chunk_delivered_twice_writes_nothing_the_second_time_nor_finishes_the_run_early(
    book, memory_broker, django_capture_on_commit_callbacks
):
    stale_everything()
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.recompute_fan_out(reason="daily", size=4)
    first, second = queued_messages("recompute")
    run_messages([first])
    snapshots = ScoreSnapshot.objects.count()
    stamped = RecomputeChunk.objects.get(run=run, index=first[2][5]).done_at
    run_messages([first])  # redelivered: its worker was killed before the acknowledgement
    assert ScoreSnapshot.objects.count() == snapshots
    assert RecomputeChunk.objects.get(run=run, index=first[2][5]).done_at == stamped
    assert recompute_progress(run.pk) == (1, 2, False)
    run_messages([second])
    assert recompute_progress(run.pk) == (2, 2, True)


def test_a_chunk_scores_a_bounded_number_and_queues_its_other_changed_accounts(
    book, memory_broker, monkeypatch, django_capture_on_commit_callbacks
):
    """Each task stays short: at most FAN_OUT_SCORE accounts scored, the rest queued behind."""
    monkeypatch.setattr(services, "FAN_OUT_SCORE", 3)
    stale_everything()
    ids = sorted(current())
    unchanged = ids[1]
    companies_refresh(company_ids=[unchanged])  # its score is current again
    companies_changed(ids[-1:], since=None, reason="sentiment")  # scored by the last task
    with django_capture_on_commit_callbacks(execute=True):
        run = tasks.recompute_fan_out(reason="daily", size=10)  # one chunk: every account
    before = current()
    [(args, kwargs)] = chunk_messages()
    tasks.recompute_chunk.apply(args=args, kwargs=kwargs).get()
    [(args, kwargs)] = chunk_messages()
    stale = [cid for cid in ids if cid != unchanged]
    assert (args[0], kwargs) == (stale[3:], {"changed": True})  # queued behind, not done here
    assert [cid for cid in ids if current()[cid].pk != before[cid].pk] == stale[:3]
    assert recompute_progress(run.pk) == (0, 1, False)
    assert PendingRefresh.objects.filter(company_id=ids[-1]).exists()  # not scored yet
    tasks.recompute_chunk.apply(args=args, kwargs=kwargs).get()
    assert chunk_messages() == []  # six changed: two tasks
    assert recompute_progress(run.pk) == (1, 1, True)
    after = current()
    assert {cid for cid in ids if after[cid].pk != before[cid].pk} == set(stale)
    assert not PendingRefresh.objects.exists()


def test_the_chunk_task_is_safe_to_deliver_again():
    """A killed worker's chunk is delivered again, and a lock timeout is retried."""
    assert tasks.recompute_chunk.acks_late
    assert set(services.RETRYABLE_ERRORS) <= set(tasks.recompute_chunk.autoretry_for)


def test_chunk_tasks_are_routed_to_the_recompute_queue_and_refreshes_are_not():
    from usage_portal.celery import app

    def queue(name: str) -> str:
        return app.amqp.router.route({}, name)["queue"].name

    assert queue("scoring.tasks.recompute_chunk") == "recompute"
    assert queue("scoring.tasks.refresh_companies") == "scoring"
    assert queue("scoring.tasks.recompute_all") == "scoring"


def test_the_procfile_worker_consumes_every_queue_a_task_is_routed_to():
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:")
    )
    words = shlex.split(line)
    consumed = set(words[words.index("--queues") + 1].split(","))
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {settings.CELERY_TASK_DEFAULT_QUEUE} <= consumed
    assert "recompute" in consumed


def test_the_daily_task_fans_out_and_rescores_everyone(book, django_capture_on_commit_callbacks):
    """Eager, as the suite runs Celery: the chunks run as they are published."""
    stale_everything()
    before = current()
    with django_capture_on_commit_callbacks(execute=True):
        queued = tasks.recompute_all.apply(kwargs={"reason": "daily", "history": False}).get()
    assert queued == 7
    run = RecomputeRun.objects.get()
    assert (run.reason, run.history, run.companies, run.finished_at is not None) == (
        "daily",
        False,
        7,
        True,
    )
    after = current()
    assert all(after[c].pk != before[c].pk and after[c].reason == "daily" for c in before)


def test_the_daily_task_rebuilds_under_new_rules_instead_when_the_version_changed(book):
    label = active_scheme().label
    ScoreSnapshot.objects.update(scheme=label.replace("@", "@0"), inputs_hash="old")
    assert tasks.recompute_all.apply(kwargs={"reason": "daily"}).get() == 0
    assert not RecomputeRun.objects.exists()  # the sync rebuilt everything itself
    assert set(ScoreSnapshot.objects.filter(is_current=True).values_list("scheme", flat=True)) == {
        label
    }


def test_a_fanned_out_chunk_settles_what_was_pending_for_its_companies(
    book, memory_broker, django_capture_on_commit_callbacks
):
    ids = sorted(i.company_id for i in book)
    companies_changed(ids[:2], since=None, reason="sentiment")
    companies_changed(ids[:1], since=dt.date(2026, 3, 1), reason="ping")
    with django_capture_on_commit_callbacks(execute=True):
        tasks.recompute_fan_out(reason="daily", size=100)  # no history
    run_messages(queued_messages("recompute"))
    # The current state was recomputed; the history change waits for its own refresh.
    assert list(PendingRefresh.objects.values_list("reason", flat=True)) == ["ping"]


def test_an_empty_book_plans_a_finished_run_and_queues_nothing(memory_broker):
    run = tasks.recompute_fan_out(reason="daily")
    assert (run.companies, run.chunks, run.finished_at is not None) == (0, 0, True)
    assert queued_messages("recompute") == []


def test_runs_older_than_a_month_are_deleted_by_the_next_plan(book):
    old = RecomputeRun.objects.create(as_of=dt.date(2026, 1, 1), chunks=1)
    RecomputeChunk.objects.create(run=old, index=0)
    RecomputeRun.objects.filter(pk=old.pk).update(
        started_at=timezone.now() - services.RECOMPUTE_RUNS_KEPT - dt.timedelta(minutes=1)
    )
    kept = RecomputeRun.objects.create(as_of=dt.date(2026, 1, 1))
    services.recompute_plan(reason="daily", history=False)
    assert not RecomputeRun.objects.filter(pk=old.pk).exists()
    assert not RecomputeChunk.objects.filter(run_id=old.pk).exists()
    assert RecomputeRun.objects.filter(pk=kept.pk).exists()


# --- The command ----------------------------------------------------------------------------

LINE = re.compile(r"Recomputed (\d+) companies .* in ([\d.]+)s")  # what bench/run.py reads


@pytest.mark.django_db(transaction=True)
def test_the_command_fans_out_waits_for_every_chunk_and_reports_the_count(book, monkeypatch):
    monkeypatch.setattr(services, "CHUNK", 2)
    stale_everything()
    out, err = io.StringIO(), io.StringIO()
    call_command("recompute_scores", "--all", "--fan-out", stdout=out, stderr=err)
    match = LINE.search(out.getvalue())
    assert match and int(match[1]) == Company.objects.count() == 7, out.getvalue()
    assert "Queued 4 chunk tasks for 7 companies." in err.getvalue()
    run = RecomputeRun.objects.get()
    assert recompute_progress(run.pk) == (4, 4, True)
    assert all(s.inputs_hash for s in current().values())
    assert set(ScoreSnapshot.objects.filter(is_current=True).values_list("reason", flat=True)) == {
        "recompute_scores --all --fan-out"
    }


def test_the_command_gives_up_waiting_and_says_how_far_the_chunks_got(book, memory_broker):
    # Inside the test's transaction the chunks are never published (they wait for the commit):
    # as if no worker consumed the queue.
    with pytest.raises(CommandError, match=r"0 of 1 chunks done .*'recompute' queue"):
        call_command("recompute_scores", "--all", "--fan-out", "--timeout", "0.3")


def test_fan_out_goes_with_all(book):
    with pytest.raises(CommandError, match="--fan-out goes with --all"):
        call_command("recompute_scores", "--company", str(book[0].company_id), "--fan-out")


# --- "Nothing changed" is cheap, and a change is still found --------------------------------


def test_inputs_without_figures_hash_as_the_full_inputs(book):
    InstanceFactory(company=book[0].company, subscription=None)  # never pinged
    ids = [i.company_id for i in book]
    as_of, scheme = timezone.now().date(), active_scheme()
    full = load_inputs(ids, as_of=as_of)
    light = load_inputs(ids, as_of=as_of, figures=False)
    assert full.keys() == light.keys() == set(ids)
    for cid in ids:
        assert inputs_hash(light[cid], scheme) == inputs_hash(full[cid], scheme)
        assert [c.ping_id for c in light[cid].candidates] == [
            c.ping_id for c in full[cid].candidates
        ]
        assert all(not c.metrics for c in light[cid].candidates)
    assert None in {c.ping_id for c in light[book[0].company_id].candidates}


def test_a_recompute_with_nothing_changed_writes_nothing(book, django_capture_on_commit_callbacks):
    snapshots = ScoreSnapshot.objects.count()
    companies_recompute_all(history=False)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.recompute_all.apply().get()
    assert RecomputeRun.objects.get().finished_at is not None  # the chunks did run
    assert ScoreSnapshot.objects.count() == snapshots


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda i: store_ping(i, days_ago=1, metrics={"billable_users": 99}, refresh=False),
            id="new ping",
        ),
        pytest.param(
            lambda i: Instance.objects.filter(pk=i.pk).update(instance_type="obsolete"),
            id="instance type",
        ),
        pytest.param(
            lambda i: (
                type(i.subscription).objects.filter(pk=i.subscription_id).update(licensed_seats=500)
            ),
            id="licensed seats",
        ),
        pytest.param(
            lambda i: Company.objects.filter(pk=i.company_id).update(sentiment="Red"),
            id="sentiment",
        ),
    ],
)
def test_a_recompute_still_finds_the_one_account_that_changed(book, change):
    target = book[2]
    change(target)
    before = current()
    companies_recompute_all(history=False)
    after = current()
    rescored = {c for c in after if after[c].pk != before[c].pk}
    assert rescored == {target.company_id}
    expected = inputs_hash(
        load_inputs([target.company_id], as_of=timezone.now().date())[target.company_id],
        active_scheme(),
    )
    assert after[target.company_id].inputs_hash == expected


def test_the_daily_run_skips_the_check_for_scores_of_an_earlier_day(book, monkeypatch):
    """Yesterday's snapshots were scored as of yesterday: changed, with no need to look."""
    ids = sorted(current())
    ScoreSnapshot.objects.filter(company_id__in=ids[:-1]).update(  # the hash of an earlier day
        computed_at=timezone.now() - dt.timedelta(days=1), inputs_hash="as of yesterday"
    )
    checked = []
    real = services.load_inputs

    def spy(company_ids, *, as_of, figures=True):
        if not figures:
            checked.extend(company_ids)
        return real(company_ids, as_of=as_of, figures=figures)

    monkeypatch.setattr(services, "load_inputs", spy)
    before = current()
    companies_recompute_all(history=False)
    after = current()
    assert checked == ids[-1:]  # only today's score was looked at (and found current)
    assert {c for c in ids if after[c].pk != before[c].pk} == set(ids[:-1])


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(lambda all_ids: all_ids, id="a run"),
        pytest.param(lambda all_ids: all_ids[:2] + all_ids[3:], id="a run with a gap"),
        pytest.param(lambda all_ids: all_ids[::3], id="scattered"),
        pytest.param(lambda all_ids: list(reversed(all_ids)) + all_ids[:2], id="unsorted"),
        pytest.param(lambda all_ids: [], id="none"),
    ],
)
def test_a_chunk_of_ids_said_as_a_range_selects_exactly_those_ids(book, ids):
    CompanyFactory.create_batch(14)
    all_ids = list(Company.objects.order_by("id").values_list("id", flat=True))
    wanted = ids(all_ids)
    among = services._among(wanted, "id")
    assert sorted(Company.objects.filter(among).values_list("id", flat=True)) == sorted(set(wanted))
