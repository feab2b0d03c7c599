"""Numbers and rows the property-based tests found answering 500 or a traceback.

Each input below is the shrunk example hypothesis reported: never a 500, never a traceback, a
refusal that names the problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client, override_settings

from accounts.models import SupportTicketMonth
from instances.models import RejectedPayload, UsagePing
from tests.conftest import PASSWORD
from tests.factories import CompanyFactory
from tests.ingest_support import command_run

pytestmark = pytest.mark.django_db

HUGE = str(2**1024)  # 309 digits: past float range


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/usage_ping_errors", '{"error": {"elapsed": %s}}'),
        ("/usage_ping_metadata", '{"metadata": {"metrics": [{"name": "0", "time_elapsed": %s}]}}'),
    ],
)
def test_a_timing_past_float_range_is_unknown_not_a_500(path, body):
    response = Client().post(path, (body % HUGE).encode(), content_type="application/json")
    assert response.status_code == 201, response.content


def test_a_burndown_age_past_a_century_is_a_field_error_not_a_500(ops):
    client = Client()
    client.login(username=ops.username, password=PASSWORD)

    response = client.get("/burndown/?older_than=111111111111111111111111111111")

    assert response.status_code == 200
    assert "less than or equal to 36500" in response.content.decode()


@pytest.mark.parametrize("written", ["²", "1" * 5000, "٣"])
def test_import_crm_refuses_digit_like_text_by_line(tmp_path: Path, written):
    CompanyFactory(crm_account_id="0011")
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(f"crm_account_id,month,tickets\n0011,2016-01,{written}\n")

    out, err, status, _ = command_run("import_crm", str(tickets))

    assert status == 1
    assert f"{tickets}:line 2: tickets" in err and "is not a whole number of tickets" in err
    assert not SupportTicketMonth.objects.exists()


def test_ingest_saas_keeps_a_row_with_more_cells_than_the_header(tmp_path: Path):
    export = tmp_path / "namespaces.csv"
    export.write_text("namespace_id,namespace_path,subscription_name,snapshot_date\n1,0,,,\n")

    out, err, status, _ = command_run("ingest_saas", str(export))

    assert status == 1
    assert f"{export}:line 2: snapshot_date" in err
    assert not UsagePing.objects.exists()
    assert RejectedPayload.objects.get().reason.startswith("line 2: snapshot_date")
