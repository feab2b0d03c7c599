"""One production-shaped stack for the whole fault suite (starting it costs ~15 s)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.faults.stack import Stack

#: The fault tests send for the first FAULT_ACCOUNTS, the load test for the rest.
FAULT_ACCOUNTS = 40
ACCOUNTS = 240
#: Every ping any test had acknowledged, to find doubles, losses and extra ones.
SENT: set[str] = set()


@pytest.fixture(scope="session")
def stack():
    # Not pytest's tmp_path: its folders rotate away under other runs, and a failure's worker,
    # web and beat logs are what explain it. The database files are removed at the end.
    folder = Path(tempfile.mkdtemp(prefix="usage-portal-faults-"))
    print(f"\nfault suite: logs in {folder}")
    s = Stack(folder)
    try:
        s.start_services()
        s.world_info = s.world("setup", str(ACCOUNTS))
        for name in ("web", "worker", "beat"):
            s.start(name)
        yield s
    finally:
        s.close()


def settle(stack: Stack, timeout: float = 120) -> dict:
    """Wait until every change has reached the scores; the verifier's last report."""
    deadline = time.monotonic() + timeout
    while True:
        state = stack.world("verify")
        if not state["stale_companies"] and not state["pending_refreshes"]:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(
                f"scores did not follow their inputs within {timeout:.0f} s: "
                f"{len(state['stale_companies'])} stale, {state['pending_refreshes']} pending\n"
                + stack.log_tail("worker")
            )
        time.sleep(1)
