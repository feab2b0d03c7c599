"""Every C360 section costs the same number of queries, within the budget, whatever the account's
size and history, and whichever way its content comes: built from the database (a real change),
taken from the content cache after a write that left it as it was, or served from the cache.

Accounts with 3 and with 30 instances, each with 10 and with 100 weeks of pings: the rows a
section reads grow tenfold, its queries must not.
"""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Company
from tests.web.test_c360_views import _client, build_account
from usage_portal.web.c360 import fragment_cache as fragments

BUDGET = 12
SECTIONS = (
    "",
    "adoption/",
    "adoption/?report=ci_builds_per_user",
    "trends/",
    "trends/?report=license",
    "trends/?report=not_production",
    "instances/",
    "scorecard/",
)
SIZES = {(n, weeks): f"q{n}x{weeks}" for n, weeks in itertools.product((3, 30), (10, 100))}


@pytest.fixture
def accounts(db, csm):
    return {
        size: build_account(name, instances=size[0], pings=size[1], csm=csm)
        for size, name in SIZES.items()
    }


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def _counts(client, company: Company, section: str, monkeypatch, build: int) -> dict[str, int]:
    url = f"/accounts/{company.pk}/{section}"
    client.get(url)  # the session's and the permission caches' first queries are not the page's
    # Built from the database: a code version no entry was made with misses both cache levels.
    monkeypatch.setattr(fragments, "code_version", lambda: f"budget-{build}")
    Company.objects.filter(pk=company.pk).touch()
    built = _queries(client, url)
    # After a write that left this section as it was: rows read again, content from the cache.
    Company.objects.filter(pk=company.pk).touch()
    after_write = _queries(client, url)
    return {"built": built, "after a write": after_write, "cached": _queries(client, url)}


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_costs_the_same_queries_for_any_account_size_and_history(
    accounts, ops, section, monkeypatch
):
    client = _client(ops)
    by_size = {
        size: _counts(client, company, section, monkeypatch, n)
        for n, (size, company) in enumerate(accounts.items())
    }
    for size, counts in by_size.items():
        assert max(counts.values()) <= BUDGET, (size, counts)
        # Taking the content from the cache saves the shaping and rendering, not the reads
        # that tell whether it may (the rows it is built from).
        assert counts["after a write"] == counts["built"], (size, counts)
        assert counts["cached"] < counts["built"], (size, counts)
    assert len({tuple(c.values()) for c in by_size.values()}) == 1, by_size
