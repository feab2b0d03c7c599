"""seed_demo builds a realistic book through the real ingest path, and re-running it is safe."""

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from accounts.models import Company, Subscription
from instances.models import Instance, LabelChange, MonthlyUsage, UsagePing
from instances.versions import parse_version
from scoring.models import ScoreSnapshot
from usage_portal.sampledata.demo import build_book, iter_ping_kwargs


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (Company, Subscription, Instance, UsagePing, MonthlyUsage, LabelChange)
    } | {"current": ScoreSnapshot.objects.filter(is_current=True).count()}


@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing_the_second_time(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "s3cret-demo")
    out = io.StringIO()
    call_command("seed_demo", companies=12, weeks=20, stdout=out)
    first = _counts()
    assert first["Company"] == 12 and first["UsagePing"] > 12 * 15
    call_command("seed_demo", companies=12, weeks=20, stdout=out)
    assert _counts() == first
    assert "0 new pings" in out.getvalue().splitlines()[-2]
    for username in ("ops", "csm1", "csm2", "viewer"):
        assert authenticate(username=username, password="s3cret-demo") is not None
    assert authenticate(username="ops", password="s3cret-demo").is_staff


@pytest.mark.django_db
def test_seeded_pings_come_through_the_ingest_path_with_raw_payloads():
    call_command("seed_demo", companies=12, weeks=20, stdout=io.StringIO())
    ping = UsagePing.objects.filter(source="bulk").exclude(raw_payload=None).first()
    assert ping is not None and ping.instance.last_ping_at is not None
    legacy = Instance.objects.get(version__startswith="13.")
    assert not legacy.pings.filter(billable_users__isnull=False).exists()  # no billable < 14.0
    assert legacy.subscription is not None  # mapped through the md5 mapping file
    lab = Instance.objects.get(hostname__startswith="lab.")  # a license nobody mapped
    assert lab.subscription is None and lab.pings.count() == 20
    assert lab.pings.unmapped().count() == 20  # every ping kept, waiting for a mapping
    assert Instance.objects.stale(60).exclude(instance_type="obsolete").exists()
    assert Instance.objects.filter(kind="saas", instance_type="production").exists()
    assert LabelChange.objects.pending().exists()


def test_default_book_covers_every_case_the_product_must_show():
    book = build_book()
    assert len(book.companies) >= 40 and book.weeks == 104
    assert {c.segment for c in book.companies} == {"Strategic", "Growth", "Scale", "Digital"}
    assert len({c.csm for c in book.companies if c.csm}) >= 3
    assert {s.plan for s in book.subscriptions} >= {"premium", "ultimate"}
    sm = [i for i in book.instances if i.kind == "self-managed"]
    assert {i.label for i in sm} >= {
        "production",
        "non_production",
        "obsolete",
        "",
        "geo_secondary",
    }
    assert any(
        i.label == "" and i.company.csm and i.company.segment in ("Strategic", "Growth") for i in sm
    )  # Unknown instances on CSM-owned accounts
    production_per_company = {}
    for i in sm:
        if i.label == "production":
            production_per_company[i.company.name] = (
                production_per_company.get(i.company.name, 0) + 1
            )
    assert max(production_per_company.values()) >= 2
    versions = [parse_version(v) for i in sm for v in i.versions]
    assert any(v < (14, 0, 0) for v in versions)
    assert any(v[0] == 16 and v[1] >= 2 for v in versions)
    assert any(i.kind == "saas" for i in book.instances)
    assert {c.trend for c in book.companies} == {"growing", "flat", "declining"}


def test_a_short_demo_book_pings_only_within_its_weeks():
    """Instances that start pinging late never start before the book's first week.

    A late start used to be drawn up to 30 weeks before the end whatever the book's length: an
    8-week book failed with an IndexError and a 20-week one dated pings from the wrong weeks.
    """
    for weeks in (8, 20):
        book = build_book(companies=48, weeks=weeks)
        dates = book.week_dates()
        for spec in book.instances:
            if spec.kind != "self-managed":
                continue
            days = [kwargs["recorded_at"].date() for kwargs in iter_ping_kwargs(book, spec)]
            assert days == sorted(set(days)), spec.hostname
            assert all(dates[0] <= day <= dates[-1] for day in days), spec.hostname


@pytest.mark.django_db
def test_seed_demo_rerun_queues_no_second_pending_edit():
    """csm1 owns several Unknown instances in the full-width book; the one pending edit the demo
    leaves must not move on to the next of them on every re-run."""
    call_command("seed_demo", companies=48, weeks=8, stdout=io.StringIO())
    first = _counts()
    pending = list(LabelChange.objects.pending().values_list("instance__hostname", flat=True))
    assert len(pending) == 1
    assert Instance.objects.unknown().filter(company__csm__username="csm1").count() >= 2
    call_command("seed_demo", companies=48, weeks=8, stdout=io.StringIO())
    assert _counts() == first
    assert list(LabelChange.objects.pending().values_list("instance__hostname", flat=True)) == (
        pending
    )
