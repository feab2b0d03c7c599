"""Load: 20 clients post 10,000 full-size pings (79 KB each) to gunicorn, with the worker and
beat running, on the suite's own PostgreSQL and Redis.

Checked: every ping is stored exactly once (counted stored = sent), no answer is a 5xx, the p95
of the answers is reported, and refreshes coalesce — a burst of 50 pings per account costs far
fewer than 50 score refreshes, because each queued refresh first checks what is still pending
(``scoring.services.companies_refresh(only_pending=True)``).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.faults.conftest import FAULT_ACCOUNTS, SENT, settle
from tests.faults.traffic import Answers, ping_body, send_all

pytestmark = pytest.mark.faults

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "20"))
PINGS = int(os.environ.get("LOAD_PINGS", "10000"))
FIRST_WEEK = 100  # after every week the fault tests use


def test_twenty_clients_ten_thousand_full_size_pings(stack, record_property):
    accounts = stack.world_info["accounts"][FAULT_ACCOUNTS:]
    weeks = -(-PINGS // len(accounts))
    # Account by account, as a backfill or an upload sends them: the clients take the next
    # ping off one list, so an account's 50 arrive together, a burst. Oldest week first: each
    # account's next ping is its newest, so every refresh that runs after one writes a new
    # current snapshot, and the snapshots written count the refreshes that ran.
    plan = [(a, FIRST_WEEK + weeks - 1 - w) for a in accounts for w in range(weeks)][:PINGS]
    before = stack.world("verify")

    answers = Answers()
    started = time.monotonic()
    finals = send_all(
        stack.base_url,
        stack.world_info["token"],
        # Built as the senders take them: 10,000 × 79 KB would be 790 MB at once.
        [lambda a=a, w=w: ping_body(a, w, full_size=True) for a, w in plan],
        clients=CLIENTS,
        answers=answers,
    )
    elapsed = time.monotonic() - started
    SENT.update(finals)

    assert len(finals) == PINGS
    assert set(finals.values()) == {201}, answers.statuses
    assert not answers.server_errors, answers.server_errors[:3]
    assert answers.connection_errors == 0

    state = settle(stack, timeout=300)
    keys = set(finals)
    stored = {k: n for k, n in state["pings"].items() if k in keys}
    assert len(stored) == PINGS, f"stored {len(stored)} of {PINGS}"
    assert set(stored.values()) == {1}

    mine = [str(a["company_id"]) for a in accounts]
    refreshes = sum(state["snapshots"].get(c, 0) - before["snapshots"].get(c, 0) for c in mine)
    per_account = PINGS / len(accounts)
    figures = {
        "pings": PINGS,
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "pings_per_second": round(PINGS / elapsed, 1),
        "p95_seconds": round(answers.p95(), 3),
        "max_seconds": round(max(answers.latencies), 3),
        "errors_5xx": 0,
        "accounts": len(accounts),
        "pings_per_account": per_account,
        "snapshots_written": refreshes,
        "snapshots_per_account": round(refreshes / len(accounts), 1),
    }
    print("\nload:", json.dumps(figures))
    record_property("load", figures)
    # Coalesced: a handful of refreshes per account's burst of 50 pings, not 50.
    assert refreshes <= 5 * len(accounts), figures
