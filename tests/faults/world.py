"""The fault suite's book, built and read in a process of its own (the suite's own database).

``python -m tests.faults.world setup N`` builds N accounts (a company, a subscription and a
Production instance each, so scores follow its pings), a CSM who owns them and an ingest token,
and prints JSON the traffic needs. ``python -m tests.faults.world verify``
prints JSON of what the database holds, for the test to compare with what it sent: pings per
(uuid, recorded_at), label changes and sentiment, and every account whose current snapshot does
not match its inputs (``scoring.services.inputs_hash``, the same digest a refresh compares).
"""

from __future__ import annotations

import os
import sys

import django
import orjson


def setup(accounts: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from instances.services.tokens import ingest_token_create
    from scoring.services import companies_recompute_all
    from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory

    User = get_user_model()
    csm = User.objects.create_user(username="fault_csm", password=PASSWORD)
    csm.groups.add(Group.objects.get(name="CSM"))
    since = timezone.now().date().replace(year=timezone.now().year - 2)
    rows = []
    for n in range(accounts):
        company = CompanyFactory(
            name=f"Fault Account {n:04d}", csm=csm, customer_since=since, crm_account_id=f"F{n:05d}"
        )
        sub = SubscriptionFactory(company=company, licensed_seats=100 + n)
        instance = InstanceFactory(
            company=company,
            subscription=sub,
            instance_type="production",
            uuid=f"fa000000-0000-4000-8000-{n:012d}",
            hostname=f"gitlab-{n:04d}.fault.example",
        )
        rows.append(
            {
                "company_id": company.pk,
                "subscription": sub.name,
                "uuid": instance.uuid,
                "hostname": instance.hostname,
                "instance_id": instance.pk,
            }
        )
    _, secret = ingest_token_create(name="fault suite", scopes=("ingest", "read"))
    companies_recompute_all(reason="fault suite setup")
    return {"accounts": rows, "token": secret, "csm": "fault_csm", "password": PASSWORD}


def verify() -> dict:
    from django.db.models import Count
    from django.utils import timezone

    from accounts.models import Company
    from instances.models import Instance, LabelChange, UsagePing
    from scoring.models import PendingRefresh, ScoreSnapshot
    from scoring.services import active_scheme, inputs_hash, load_inputs

    pings = {
        f"{row['instance__uuid']}|{row['recorded_at'].isoformat()}": row["n"]
        for row in UsagePing.objects.values("instance__uuid", "recorded_at").annotate(n=Count("id"))
    }
    scheme = active_scheme()
    ids = list(Company.objects.values_list("id", flat=True))
    inputs = load_inputs(ids, as_of=timezone.now().date())
    current = dict(
        ScoreSnapshot.objects.filter(is_current=True).values_list("company_id", "inputs_hash")
    )
    several = list(
        ScoreSnapshot.objects.filter(is_current=True)
        .values("company_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("company_id", flat=True)
    )
    stale = sorted(
        cid
        for cid, company_inputs in inputs.items()
        if current.get(cid) != inputs_hash(company_inputs, scheme)
    )
    labels = [
        {
            "instance_id": c.instance_id,
            "field": c.field,
            "new_value": c.new_value,
            "status": c.status,
            "applied": c.applied_at is not None,
        }
        for c in LabelChange.objects.order_by("id")
    ]
    instances = {
        str(i["id"]): i["instance_type"] for i in Instance.objects.values("id", "instance_type")
    }
    sentiment = {
        str(c["id"]): c["sentiment_note"] for c in Company.objects.values("id", "sentiment_note")
    }
    snapshots = {
        str(row["company_id"]): row["n"]
        for row in ScoreSnapshot.objects.values("company_id").annotate(n=Count("id"))
    }
    return {
        "pings": pings,
        "snapshots": snapshots,
        "stale_companies": stale,
        "several_current": several,
        "pending_refreshes": PendingRefresh.objects.count(),
        "labels": labels,
        "instance_types": instances,
        "sentiment_notes": sentiment,
    }


PASSWORD = "fault-suite-password-1"

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_portal.settings")
    django.setup()
    command = sys.argv[1]
    result = setup(int(sys.argv[2])) if command == "setup" else verify()
    sys.stdout.write(orjson.dumps(result).decode())
