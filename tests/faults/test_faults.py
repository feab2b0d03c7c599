"""Faults injected while traffic flows, and the database compared with what was sent.

The stack is the Procfile's (gunicorn, worker, beat) on the suite's own PostgreSQL and Redis
(tests/faults/stack.py). Each test sends pings from several clients (and, where it says, a CSM's
edits), injects one fault mid-traffic, and after recovery checks: every ping acknowledged is
stored exactly once and nothing else is; no answer was a 5xx other than the JSON 503 with
``Retry-After`` that the ping contract promises; every edit acknowledged is applied once; every
account's current snapshot matches its inputs (the refresh digest), with nothing left pending;
and the worker and beat are still alive.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import requests

from tests.faults.conftest import FAULT_ACCOUNTS, SENT, settle
from tests.faults.stack import Stack
from tests.faults.traffic import Answers, Background, Csm, ping_body

pytestmark = pytest.mark.faults
CLIENTS = 8
_weeks = itertools.count(1)


def next_weeks(n: int) -> list[int]:
    return [next(_weeks) for _ in range(n)]


def bodies_for(stack: Stack, weeks_per_account: int) -> list[bytes]:
    accounts = stack.world_info["accounts"][:FAULT_ACCOUNTS]
    return [ping_body(a, week) for week in next_weeks(weeks_per_account) for a in accounts]


def traffic_for(stack: Stack, weeks_per_account: int, answers: Answers) -> Background:
    """CLIENTS senders posting that many new weeks for every fault account, in the background."""
    return Background(
        stack.base_url, stack.world_info["token"], bodies_for(stack, weeks_per_account),
        clients=CLIENTS, answers=answers,
    )  # fmt: skip


def check_recovered(stack: Stack, finals: dict[str, int], answers: Answers) -> dict:
    refused = {k: v for k, v in finals.items() if v not in (200, 201)}
    assert not refused, f"pings refused for good: {list(refused.items())[:5]}"
    SENT.update(finals)
    state = settle(stack)
    stored = state["pings"]
    doubles = {k: n for k, n in stored.items() if n != 1}
    assert not doubles, f"pings stored more than once: {list(doubles.items())[:5]}"
    missing = SENT - stored.keys()
    assert not missing, f"{len(missing)} acknowledged pings are not stored: {sorted(missing)[:3]}"
    extra = stored.keys() - SENT
    assert not extra, f"{len(extra)} pings stored that no test had acknowledged"
    assert not answers.unexpected_5xx, (answers.unexpected_5xx[:3], stack.log_tail("web"))
    assert answers.without_retry_after == 0
    assert not state["several_current"], "an account has two current snapshots"
    for name in ("web", "worker", "beat"):
        assert stack.alive(name), f"{name} died:\n{stack.log_tail(name)}"
    return state


def test_the_stack_takes_traffic_with_no_fault(stack):
    answers = Answers()
    finals = traffic_for(stack, 2, answers).join()
    assert set(finals.values()) == {201}
    assert answers.statuses == {201: len(finals)}
    check_recovered(stack, finals, answers)


@pytest.mark.parametrize("run", range(3))
def test_redis_restarts_under_traffic(stack, run):
    """Broker and cache gone for a second, three times per run: nothing lost, nothing refused."""
    answers = Answers()
    traffic = traffic_for(stack, 8, answers)
    for _ in range(3):
        time.sleep(0.7)
        stack.redis.restart(down_for=1.0)
    finals = traffic.join()
    # The broker being away never refuses a ping: the refresh waits in the database.
    assert set(answers.statuses) <= {200, 201}, answers.statuses
    check_recovered(stack, finals, answers)


@pytest.mark.parametrize("run", range(3))
def test_a_hung_redis_costs_seconds_not_the_web_tier(stack, run):
    """Redis paused (SIGSTOP) for 8 s: no request waits for it, the login page still answers."""
    answers = Answers()
    traffic = traffic_for(stack, 6, answers)
    time.sleep(0.5)
    stack.redis.pause()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        login = requests.get(stack.base_url + "/login/", timeout=30)
        login_seconds = time.monotonic() - started
        time.sleep(7.0)
    finally:
        stack.redis.resume()
    finals = traffic.join()
    assert login.status_code == 200
    assert login_seconds < 5, f"/login/ took {login_seconds:.1f} s with Redis hung"
    slowest = max(answers.latencies)
    # Before: every POST /usage_data blocked for as long as Redis hung (75 s of 75 s).
    assert slowest < 6, f"a request waited {slowest:.1f} s on the hung Redis"
    check_recovered(stack, finals, answers)


@pytest.mark.parametrize("run", range(2))
def test_a_postgresql_restart_under_traffic_and_edits(stack, run):
    """PostgreSQL stopped for 3 s mid-traffic: pings get a JSON 503 with Retry-After and are
    retried; a CSM's edits either apply once or say they did not; nothing is lost."""
    info = stack.world_info
    answers = Answers()
    traffic = traffic_for(stack, 10, answers)
    csm = Csm(stack.base_url, info["csm"], info["password"], answers)
    edited: dict[int, str] = {}
    stop = threading.Event()

    def edits() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            account = info["accounts"][n % 5]
            note = f"run {run} edit {n}"
            status = csm.set_sentiment(account["company_id"], note)
            if status == 302:  # applied: the page redirects back to the summary
                edited[account["company_id"]] = note
            else:
                raise AssertionError(f"sentiment edit answered {status}")

    editor = threading.Thread(target=edits)
    editor.start()
    time.sleep(1.0)
    stack.postgres.restart(down_for=3.0)
    time.sleep(2.0)
    stop.set()
    editor.join()
    finals = traffic.join()

    assert answers.statuses[503] + answers.connection_errors > 0, "the outage was not seen"
    state = check_recovered(stack, finals, answers)
    for company_id, note in edited.items():
        assert state["sentiment_notes"][str(company_id)] == note


def test_labels_come_due_across_a_killed_worker_and_a_postgres_restart(stack):
    """Label edits wait 7 s; meanwhile the worker is killed (-9, whole group) and PostgreSQL
    restarts. Each change applies exactly once, by the sweep, once the worker is back."""
    info = stack.world_info
    answers = Answers()
    csm = Csm(stack.base_url, info["csm"], info["password"], answers)
    wanted = {}
    for account in info["accounts"][10:16]:
        for value in ("non_production", "production", "obsolete"):
            assert csm.relabel(account["company_id"], account["instance_id"], value) == 302
        wanted[str(account["instance_id"])] = "obsolete"
    stack.kill("worker")
    stack.postgres.restart(down_for=2.0)
    time.sleep(8.0)  # past the changes' effective time, with no worker
    stack.start("worker")
    deadline = time.monotonic() + 90
    while True:
        state = stack.world("verify")
        mine = [c for c in state["labels"] if str(c["instance_id"]) in wanted]
        if all(c["status"] != "pending" for c in mine):
            break
        assert time.monotonic() < deadline, f"label changes not applied: {mine}"
        time.sleep(1)
    # A later request for the same field supersedes an earlier pending one; the last applies.
    applied = [c for c in mine if c["applied"]]
    assert sorted(str(c["instance_id"]) for c in applied) == sorted(wanted)
    state = check_recovered(stack, {}, answers)
    for instance_id, value in wanted.items():
        assert state["instance_types"][instance_id] == value


def test_a_worker_killed_mid_traffic_loses_no_refresh(stack):
    """The worker (main process and pool, -9) dies while pings arrive; pings are still
    accepted, and once it is back every account's scores match what was stored."""
    answers = Answers()
    traffic = traffic_for(stack, 8, answers)
    time.sleep(1.0)
    stack.kill("worker")
    time.sleep(2.0)
    stack.start("worker")
    finals = traffic.join()
    assert set(answers.statuses) <= {200, 201}, answers.statuses
    check_recovered(stack, finals, answers)
