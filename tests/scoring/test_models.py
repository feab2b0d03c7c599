"""The database itself keeps the data sane: unique identities and valid choices."""

import pytest

from accounts.models import Company
from scoring.models import ScoreSnapshot
from tests.factories import refused

pytestmark = pytest.mark.django_db


def test_one_current_score_snapshot_per_company():
    company = Company.objects.create(name="A", crm_account_id="1", segment="Scale")
    ScoreSnapshot.objects.create(company=company, scheme="s", inputs_hash="1", detail={})
    assert refused(
        lambda: ScoreSnapshot.objects.create(
            company=company, scheme="s", inputs_hash="2", detail={}
        )
    )
    ScoreSnapshot.objects.create(
        company=company, scheme="s", inputs_hash="3", detail={}, is_current=False
    )
    assert ScoreSnapshot.objects.filter(company=company).count() == 2
