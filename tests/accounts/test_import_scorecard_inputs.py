"""``import_crm`` for the rest of the scorecard: success-plan ROI, support tickets per month and
meetings with personas (and a company's prioritization), through to the stored score, the
Scorecard page and the admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Company, Meeting, SupportTicketMonth
from scoring.models import ScoreSnapshot
from scoring.services import companies_refresh
from tests.accounts.test_import_crm import run, write
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.web.test_c360_views import _client, _html

pytestmark = pytest.mark.django_db


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what each import queues after commit (the score refresh), here and now."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def company(csm):
    sub = SubscriptionFactory(licensed_seats=100, company__crm_account_id="0011")
    Company.objects.filter(pk=sub.company_id).update(csm=csm, segment="Strategic")
    instance = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(instance, days_ago=1, metrics={"billable_users": 90}, refresh=False)
    companies_refresh(company_ids=[sub.company_id])
    return Company.objects.get(pk=sub.company_id)


def _groups(company) -> dict:
    detail = ScoreSnapshot.objects.get(company=company, is_current=True).detail
    return {k: (g["color"], g["reason"]) for k, g in detail["groups"].items()}


def _files(tmp_path, today: dt.date):
    month = today.replace(day=1)
    recent = today - dt.timedelta(days=12)
    return [
        write(tmp_path, "plans.csv", "crm_account_id,roi,note\n0011,yellow,ROI review Q3\n"),
        write(tmp_path, "tickets.csv", f"crm_account_id,month,tickets\n0011,{month:%Y-%m},3\n"),
        write(
            tmp_path,
            "meetings.csv",
            f"crm_account_id,date,personas\n0011,{recent.isoformat()},Dev Lead; Security Lead\n",
        ),
    ]


def test_the_three_files_feed_outcomes_voice_and_engagement(tmp_path, company, commits):
    Company.objects.filter(pk=company.pk).update(prioritization=1)
    with commits(execute=True):  # the refresh each import queues
        out, err, status = run(*_files(tmp_path, timezone.localdate()))
    assert status == 0, err
    assert _groups(company) == {
        "outcomes": ("Yellow", None),
        "voice_of_customer": ("Green", None),
        "engagement": ("Green", None),
    }
    assert Meeting.objects.get(company=company).persona_set == {"Dev Lead", "Security Lead"}
    company.refresh_from_db()
    assert company.roi == "Yellow" and company.roi_note == "ROI review Q3" and company.roi_at


def test_reimporting_the_same_files_changes_nothing(tmp_path, company):
    files = _files(tmp_path, timezone.localdate())
    run(*files)
    before = (SupportTicketMonth.objects.count(), Meeting.objects.count())
    out, err, status = run(*files)
    assert status == 0
    assert (SupportTicketMonth.objects.count(), Meeting.objects.count()) == before == (1, 1)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        (
            "t.csv",
            "crm_account_id,month,tickets\n0011,2026-13,3\n",
            "month '2026-13' is not YYYY-MM",
        ),
        ("t.csv", "crm_account_id,month,tickets\n0011,2026-10,-1\n", "tickets '-1' is not a whole"),
        ("p.csv", "crm_account_id,roi\n0011,purple\n", "roi 'purple' is not one of"),
        ("p.csv", "crm_account_id,roi\n9999,red\n", "crm_account_id '9999' is not a known company"),
        ("m.csv", "crm_account_id,date,personas\n0011,yesterday,Dev Lead\n", "date 'yesterday'"),
    ],
)
def test_a_bad_row_names_its_file_line_and_problem_and_nothing_else_is_lost(
    tmp_path, company, name, text, problem
):
    path = write(tmp_path, name, text)
    out, err, status = run(path)
    assert status == 1
    assert f"{path}:line 2: " in err and problem in err


def test_an_admin_edit_of_a_meeting_rescores_the_account(company, ops, commits):
    Company.objects.filter(pk=company.pk).update(prioritization=1)
    meeting = Meeting.objects.create(
        company=company, day=timezone.localdate() - dt.timedelta(days=70), personas="Dev Lead"
    )
    companies_refresh(company_ids=[company.pk])
    assert _groups(company)["engagement"][0] == "Red"  # 70 days: cadence Red, personas Red
    client = _client(ops)
    url = reverse("admin:accounts_meeting_change", args=[meeting.pk])
    recent = timezone.localdate() - dt.timedelta(days=3)
    with commits(execute=True):
        response = client.post(
            url,
            {
                "company": company.pk,
                "day": recent.isoformat(),
                "personas": "Dev Lead, Security Lead",
            },
        )
    assert response.status_code == 302
    assert _groups(company)["engagement"][0] == "Green"


def test_the_scorecard_page_explains_each_group(tmp_path, company, viewer, commits):
    Company.objects.filter(pk=company.pk).update(prioritization=2)
    with commits(execute=True):
        run(*_files(tmp_path, timezone.localdate()))
    html = _html(_client(viewer).get(reverse("account_scorecard", args=[company.pk])))
    for text in (
        "Outcomes",
        "Success-plan ROI",
        "Voice of customer",
        "Tickets",
        "Engagement",
        "Personas met",
        "Dev Lead, Security Lead",
        "Prioritization 2: Green ≤ 65",
    ):
        assert text in html, text


@pytest.mark.parametrize("months", [2, 40])
def test_an_import_runs_the_same_queries_whatever_its_size(
    company, months, django_assert_num_queries
):
    from accounts.importers import TicketRow
    from accounts.services import support_tickets_import

    start = dt.date(2020, 1, 1)
    rows = [
        TicketRow(n + 2, "0011", dt.date(start.year + n // 12, n % 12 + 1, 1), n)
        for n in range(months)
    ]
    # Companies, existing rows, one insert, the account's touch (one statement), its pending
    # refresh and the savepoints of the atomic block: 7, for 2 rows as for 40.
    with django_assert_num_queries(7):
        summary = support_tickets_import(rows=rows)
    assert (summary.created, summary.updated) == (months, 0)
