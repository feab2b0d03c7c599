"""Writes announce, scoring listens: the one place a write says "these accounts' data changed".

Every write that changes what an account's scores or pages are computed from (pings, mappings,
imports, label requests and applies, sentiment, admin edits) calls ``companies_changed`` in its
own transaction, and nothing else:

- the accounts' data version (``Company.updated_at``, the C360 cache key) moves at once, inside
  the writer's transaction, so no page serves parts older than the commit;
- inside the transaction, ``data_changing`` is sent with the accounts and the first changed
  day: ``scoring`` records them durably (a pending refresh row), so a commit can never leave
  scores that silently disagree with their inputs;
- once that transaction commits, ``data_changed`` is sent ONCE with every account the
  transaction changed and the first day whose data changed. ``scoring`` listens
  (``scoring.listeners``) and queues one refresh per distinct day, best-effort (a broker that
  is down leaves the pending rows to the beat sweep); a transaction that rolls back sends
  nothing and its pending rows roll back with it.

The writers know nothing of scoring's tasks, and scoring's own writes (snapshots, monthly
history) move the version with ``CompanyQuerySet.touch`` only: they are results, not inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from django.db import connection, transaction
from django.dispatch import Signal

from accounts.models import Company

#: ``since`` for a change that can alter every month of history (a label, a subscription).
ALL_HISTORY = date.min

#: Sent after the commit of a transaction that changed accounts' data, with ``changes``: a dict
#: of company id → the first day whose data changed (``ALL_HISTORY``: every month; ``None``:
#: only the current state, e.g. sentiment, which has no history), and ``reason``.
data_changed = Signal()

#: Sent inside the writer's transaction, with ``company_ids``, ``since`` and ``reason``, once per
#: ``companies_changed`` call: a receiver's writes commit or roll back with the change itself.
data_changing = Signal()


def _earliest(a: date | None, b: date | None) -> date | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


@dataclass
class _Pending:
    """What one transaction has announced so far; sent by ``__call__`` after it commits."""

    changes: dict[int, date | None] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    sent: bool = False

    def add(self, ids: Iterable[int], since: date | None, reason: str) -> None:
        for company_id in ids:
            if company_id in self.changes:
                self.changes[company_id] = _earliest(self.changes[company_id], since)
            else:
                self.changes[company_id] = since
        if reason and reason not in self.reasons:
            self.reasons.append(reason)

    def __call__(self) -> None:
        self.sent = True
        data_changed.send(
            sender=Company, changes=dict(self.changes), reason=", ".join(self.reasons)[:64]
        )


def _pending() -> _Pending:
    """The current transaction's accumulator, registered with ``on_commit`` on first use.

    Found again through Django's own list of commit callbacks: one rolled back (with its
    transaction or savepoint) is gone from that list, so a later transaction starts afresh;
    one already sent (tests run callbacks inside a transaction that never commits) is skipped.
    """
    for _sids, func, _robust in connection.run_on_commit:
        if isinstance(func, _Pending) and not func.sent:
            return func
    pending = _Pending()
    transaction.on_commit(pending)
    return pending


def companies_changed(
    company_ids: Iterable[int | None],
    *,
    since: date | None = ALL_HISTORY,
    reason: str = "",
    refresh: bool = True,
) -> None:
    """Announce that these accounts' data changed from ``since`` on (see the module docstring).

    ``refresh=False``: move the data version only, for bulk loaders that recompute everything
    themselves at the end.
    """
    ids = sorted({i for i in company_ids if i})
    if not ids:
        return
    # Outside a transaction this one is the writer's own: sent as soon as it commits.
    with transaction.atomic(savepoint=False):
        Company.objects.touch_ids(ids)
        if refresh:
            data_changing.send(sender=Company, company_ids=ids, since=since, reason=reason)
            _pending().add(ids, since, reason)
