"""The database itself keeps the data sane: unique identities and valid choices."""

import datetime as dt

import pytest

from accounts.models import Subscription
from tests.factories import CompanyFactory, SubscriptionFactory, refused

pytestmark = pytest.mark.django_db


def test_crm_account_id_is_unique():
    CompanyFactory(crm_account_id="0011")
    assert refused(lambda: CompanyFactory(crm_account_id="0011"))


def test_company_segment_and_sentiment_must_be_valid_choices():
    assert refused(lambda: CompanyFactory(segment="Enterprise"))
    assert refused(lambda: CompanyFactory(sentiment="Blue"))
    assert not refused(lambda: CompanyFactory(segment="Digital", sentiment=""))


def test_company_cannot_be_its_own_parent():
    company = CompanyFactory()
    company.parent_id = company.id
    assert refused(company.save)


def test_subscription_name_unique_and_fields_valid():
    sub = SubscriptionFactory(name="A-S00000001")
    assert refused(lambda: SubscriptionFactory(name="A-S00000001"))
    assert refused(lambda: SubscriptionFactory(plan="platinum"))
    assert refused(lambda: SubscriptionFactory(deployment="cloud"))
    assert refused(lambda: SubscriptionFactory(status="paused"))
    today = dt.date(2026, 1, 1)
    assert refused(
        lambda: SubscriptionFactory(start_date=today, end_date=today - dt.timedelta(days=1))
    )
    assert refused(lambda: SubscriptionFactory(arr=-5))
    assert Subscription.objects.filter(pk=sub.pk).exists()
