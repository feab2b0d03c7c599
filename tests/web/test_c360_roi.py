"""The success plan's ROI on the account's Summary: set by its CSM (or ops) like sentiment,
refused to others, refused with a reason when incomplete, and scored as Outcomes."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Company
from scoring.models import ScoreSnapshot
from tests.web.test_c360_views import _client, _html, build_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(csm):
    return build_account("roi", instances=1, pings=3, csm=csm)


def _post(client, company, **data):
    return client.post(
        reverse("account_roi", args=[company.pk]), {f"roi-{k}": v for k, v in data.items()}
    )


def test_the_owning_csm_records_the_roi_and_outcomes_scores_it(
    account, csm, django_capture_on_commit_callbacks
):
    client = _client(csm)
    assert "Record the success plan" in _html(
        client.get(reverse("account_summary", args=[account.pk]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, account, roi="Yellow", note="two of three objectives met")
    assert response.status_code == 302 and response["Location"].endswith("#roi")
    account.refresh_from_db()
    assert (account.roi, account.roi_note) == ("Yellow", "two of three objectives met")
    card = ScoreSnapshot.objects.get(company=account, is_current=True).detail
    assert card["groups"]["outcomes"]["color"] == "Yellow"
    assert "outcomes" in card["overall_health"]["inputs"]["weights_used"]


@pytest.mark.parametrize("who", ["other_csm", "viewer"])
def test_others_may_not_record_it(account, who, request):
    user = request.getfixturevalue(who)
    response = _post(_client(user), account, roi="Red", note="no")
    assert response.status_code == 403
    assert Company.objects.get(pk=account.pk).roi == ""
    page = _html(_client(user).get(reverse("account_summary", args=[account.pk])))
    assert "Record the success plan" not in page


def test_an_incomplete_form_is_refused_with_the_reason(account, csm):
    response = _post(_client(csm), account, roi="Green", note="")
    assert response.status_code == 400
    assert "Add a note saying why" in response.content.decode()
    assert Company.objects.get(pk=account.pk).roi == ""
