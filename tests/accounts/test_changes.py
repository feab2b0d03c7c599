"""``accounts.changes``: writes announce once per transaction, after commit; scoring listens."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.db import transaction

from accounts import changes
from accounts.changes import ALL_HISTORY, companies_changed, data_changed
from accounts.models import Company
from accounts.services import sentiment_set
from scoring import tasks
from tests.factories import CompanyFactory

pytestmark = pytest.mark.django_db

JAN = dt.date(2026, 1, 14)
MAR = dt.date(2026, 3, 2)


@pytest.fixture
def sent():
    """Every ``data_changed`` sent while the test runs: (changes, reason)."""
    received = []

    def listener(*, changes, reason, **_):
        received.append((changes, reason))

    data_changed.connect(listener, dispatch_uid="tests.sent")
    yield received
    data_changed.disconnect(dispatch_uid="tests.sent")


@pytest.fixture
def queued(monkeypatch):
    calls = []

    def apply_async(args, kwargs, countdown):
        # Every refresh queued after a change waits a moment and skips what an earlier run
        # already covered: a burst is refreshed once.
        assert kwargs == {"only_pending": True}
        assert countdown == settings.REFRESH_COALESCE_SECONDS == 1.0
        calls.append(tuple(args))

    monkeypatch.setattr(tasks.refresh_companies, "apply_async", apply_async)
    return calls


def test_one_signal_per_transaction_with_every_company_and_the_earliest_day(
    sent, django_capture_on_commit_callbacks
):
    a, b = CompanyFactory(), CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        companies_changed([a.pk], since=MAR, reason="new ping")
        companies_changed([a.pk, b.pk], since=JAN, reason="new ping")
        companies_changed([b.pk, None], since=MAR, reason="license mapped")
    assert len(callbacks) == 1
    assert sent == [({a.pk: JAN, b.pk: JAN}, "new ping, license mapped")]


def test_nothing_is_sent_before_the_commit_nor_for_a_rolled_back_transaction(
    sent, django_capture_on_commit_callbacks
):
    company = CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            companies_changed([company.pk], reason="doomed")
            assert sent == []  # not before the commit
            raise RuntimeError
        companies_changed([company.pk], reason="kept")
    assert sent == [({company.pk: ALL_HISTORY}, "kept")]


def test_a_rolled_back_savepoint_takes_its_announcement_with_it(
    sent, django_capture_on_commit_callbacks
):
    a, b = CompanyFactory(), CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        try:
            with transaction.atomic():
                companies_changed([a.pk], reason="inner")
                raise RuntimeError
        except RuntimeError:
            pass
        companies_changed([b.pk], reason="outer")
    assert sent == [({b.pk: ALL_HISTORY}, "outer")]


def test_the_data_version_moves_at_once_inside_the_writers_transaction(
    django_capture_on_commit_callbacks,
):
    company = CompanyFactory()
    before = Company.objects.get(pk=company.pk).updated_at
    with django_capture_on_commit_callbacks(execute=False):
        companies_changed([company.pk], refresh=False)
        assert Company.objects.get(pk=company.pk).updated_at > before


def test_a_version_only_change_queues_no_refresh(sent, django_capture_on_commit_callbacks):
    company = CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        companies_changed([company.pk], refresh=False)
    assert callbacks == [] and sent == []


def test_no_company_means_no_write_and_no_signal(sent, django_assert_num_queries):
    with django_assert_num_queries(0):
        companies_changed([None, None])
    assert sent == []


def test_scoring_queues_one_refresh_per_distinct_first_day(
    queued, django_capture_on_commit_callbacks
):
    a, b, c, d = CompanyFactory(), CompanyFactory(), CompanyFactory(), CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        companies_changed([a.pk, b.pk], since=MAR, reason="new ping")
        companies_changed([c.pk], reason="label change applied")
        companies_changed([d.pk], since=None, reason="sentiment")
    assert sorted(queued, key=repr) == sorted(
        [
            (
                sorted([a.pk, b.pk]),
                "new ping, label change applied, sentiment",
                MAR.isoformat(),
                True,
            ),
            ([c.pk], "new ping, label change applied, sentiment", None, True),
            ([d.pk], "new ping, label change applied, sentiment", None, False),
        ],
        key=repr,
    )


def test_sentiment_refreshes_the_current_score_only(
    queued, csm, django_capture_on_commit_callbacks
):
    company = CompanyFactory(csm=csm)
    with django_capture_on_commit_callbacks(execute=True):
        sentiment_set(company=company, sentiment="Green", note="happy", by=csm)
    assert queued == [([company.pk], "sentiment", None, False)]


def test_the_accumulator_is_found_again_only_while_unsent(django_capture_on_commit_callbacks):
    company = CompanyFactory()
    with django_capture_on_commit_callbacks(execute=True):
        companies_changed([company.pk])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        companies_changed([company.pk], since=JAN)
    pending = [c for c in callbacks if isinstance(c, changes._Pending)]
    assert len(pending) == 1 and pending[0].changes == {company.pk: JAN}
