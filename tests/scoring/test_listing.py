"""The accounts' stored listing (``Company.listing_*``) stays what it is derived from.

Its one writer, ``scoring.listing.listings_refresh``, runs with every snapshot write. Each test
here changes an account's data through the real services (pings, label changes, a delete, a
move to another account, a scoring rule change), lets the announced refresh run, and compares
every account's listing with its sources of truth: the current snapshot and the instances.
"""

from __future__ import annotations

import importlib
from collections import Counter
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection

from accounts.changes import companies_changed
from accounts.models import Company
from instances.labels import label_change_apply, label_change_request
from instances.models import Instance
from scoring.listing import listings_refresh
from scoring.models import ScoreSnapshot
from scoring.services import companies_refresh, scheme_set
from tests.factories import CompanyFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db

RANK = {"Red": 0, "Yellow": 1, "Green": 2}
FIGURES = {
    "listing_license_utilization": "license_utilization",
    "listing_product_usage": "product_usage_value",
    "listing_licensed_seats": "licensed_seats",
    "listing_billable_users": "billable_users",
}
COLORS = {
    "listing_lu_rank": "license_utilization_color",
    "listing_ue_rank": "user_engagement_color",
    "listing_scm_rank": "scm_color",
    "listing_ci_rank": "ci_color",
    "listing_cd_rank": "cd_color",
    "listing_devsecops_rank": "devsecops_color",
    "listing_product_usage_rank": "product_usage_color",
    "listing_overall_rank": "overall_color",
}
LISTING = [f.name for f in Company._meta.concrete_fields if f.name.startswith("listing_")]


def truth(company_id: int) -> dict:
    """The listing as derived from the account's current snapshot and instances."""
    snap = ScoreSnapshot.objects.filter(company_id=company_id, is_current=True).first()
    instances = list(Instance.objects.filter(company_id=company_id))
    types = Counter(i.instance_type for i in instances)
    pings = [i.last_ping_at for i in instances if i.last_ping_at]
    out = {field: getattr(snap, figure) if snap else None for field, figure in FIGURES.items()}
    out |= {field: RANK.get(getattr(snap, c), 3) if snap else 3 for field, c in COLORS.items()}
    return out | {
        "listing_production": types["production"],
        "listing_non_production": types["non_production"],
        "listing_unknown": types["unknown"],
        "listing_other": types["obsolete"] + types["geo_secondary"],
        "listing_last_ping_at": max(pings, default=None),
    }


def stored(company_id: int) -> dict:
    return Company.objects.filter(pk=company_id).values(*LISTING).get()


def assert_listings_true():
    assert set(LISTING) == set(truth(0)), "every listing field has its truth here"
    for company_id in Company.objects.values_list("pk", flat=True):
        assert stored(company_id) == truth(company_id), company_id


@pytest.fixture
def run_refreshes(django_capture_on_commit_callbacks):
    """Run what a change announces after its commit (the refresh task, eager in the tests)."""

    def run(change, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return change(*args, **kwargs)

    return run


def test_the_demo_books_listing_is_its_scorecards_and_instances(demo):
    # The demo is loaded through the real ingest, labeling and scoring paths.
    assert Company.objects.exclude(listing_unknown=0).exists()
    assert Company.objects.exclude(listing_overall_rank=3).exists()
    assert_listings_true()


def test_the_listing_follows_pings_labels_moves_and_deletes(run_refreshes, ops):
    sub_a = SubscriptionFactory()
    sub_b = SubscriptionFactory()
    a, b = sub_a.company_id, sub_b.company_id

    # A first ping: a new instance, Unknown until labeled, and the account's last ping.
    ping = run_refreshes(
        store_ping, "uuid-a1", hostname="a1.example.com", subscription=sub_a, days_ago=3
    )
    first = ping.instance
    assert stored(a)["listing_unknown"] == 1
    assert stored(a)["listing_last_ping_at"] == ping.recorded_at
    assert ScoreSnapshot.objects.filter(company_id=a, is_current=True).exists()
    assert_listings_true()

    # A newer ping moves the last ping; an older one does not.
    newer = run_refreshes(store_ping, first, days_ago=1)
    run_refreshes(store_ping, first, days_ago=10)
    assert stored(a)["listing_last_ping_at"] == newer.recorded_at
    assert_listings_true()

    # Labeled Production: the counts move with the label.
    change = label_change_request(instance=first, field="instance_type", value="production", by=ops)
    run_refreshes(label_change_apply, change_id=change.pk, via="apply_now", by=ops, force=True)
    assert (stored(a)["listing_production"], stored(a)["listing_unknown"]) == (1, 0)
    assert stored(a)["listing_overall_rank"] != 3 or stored(a)["listing_license_utilization"]
    assert_listings_true()

    # A second instance, labeled Obsolete: "Other".
    second = run_refreshes(
        store_ping, "uuid-a2", hostname="a2.example.com", subscription=sub_a, days_ago=2
    ).instance
    change = label_change_request(instance=second, field="instance_type", value="obsolete", by=ops)
    run_refreshes(label_change_apply, change_id=change.pk, via="apply_now", by=ops, force=True)
    assert stored(a)["listing_other"] == 1
    assert_listings_true()

    # Its newest ping names the other account's subscription: it moves, both accounts follow.
    run_refreshes(store_ping, second, subscription=sub_b, days_ago=0)
    assert Instance.objects.get(pk=second.pk).company_id == b
    assert (stored(a)["listing_other"], stored(b)["listing_other"]) == (0, 1)
    assert_listings_true()

    # Deleted (as the admin deletes: the delete, then the announcement).
    def delete():
        Instance.objects.filter(pk=first.pk).delete()
        companies_changed([a], reason="deleted in the admin")

    run_refreshes(delete)
    assert stored(a)["listing_production"] == 0
    assert stored(a)["listing_last_ping_at"] is None
    assert_listings_true()


def test_a_new_scoring_rule_rewrites_every_listing(run_refreshes, ops):
    for n in range(3):
        sub = SubscriptionFactory()
        run_refreshes(
            store_ping, f"uuid-{n}", hostname=f"h{n}.example.com", subscription=sub, days_ago=1
        )
    # Scores moved by hand, behind scoring's back: a refresh with nothing changed keeps them...
    ScoreSnapshot.objects.update(overall_color="Green")
    companies_refresh(company_ids=list(Company.objects.values_list("pk", flat=True)))
    assert set(Company.objects.values_list("listing_overall_rank", flat=True)) != {2}
    # ...and any snapshot written (here: every one, under another scheme) brings them back.
    scheme_set(name="gitlab-dbt-2024", rebuild_history=False)
    assert_listings_true()


def test_an_account_never_scored_lists_no_figures_and_its_instances(db):
    company = CompanyFactory()
    Instance.objects.create(
        kind="self-managed", uuid="u1", company=company, instance_type="unknown"
    )
    Company.objects.filter(pk=company.pk).update(listing_overall_rank=0, listing_production=5)
    assert listings_refresh([company.pk]) == 1
    assert stored(company.pk) == truth(company.pk)
    assert stored(company.pk)["listing_unknown"] == 1
    assert stored(company.pk)["listing_overall_rank"] == 3


def test_saving_a_loaded_account_leaves_its_listing_alone(run_refreshes):
    sub = SubscriptionFactory()
    loaded = Company.objects.get(pk=sub.company_id)  # as the admin loads it, before a ping
    run_refreshes(store_ping, "uuid-x", hostname="x.example.com", subscription=sub, days_ago=1)
    loaded.name = "Renamed"
    loaded.save()
    assert Company.objects.get(pk=loaded.pk).name == "Renamed"
    assert stored(loaded.pk)["listing_unknown"] == 1  # not the 0 it was loaded with
    assert_listings_true()


def test_the_migrations_backfill_is_the_listing(run_refreshes, ops):
    """The migration fills the listing (on PostgreSQL in one UPDATE … FROM, elsewhere with
    subqueries): run on a book whose listings were wiped, it must give what scoring gives."""
    for n in range(4):
        sub = SubscriptionFactory(company__segment=("Strategic", "Scale")[n % 2])
        run_refreshes(
            store_ping, f"uuid-m{n}", hostname=f"m{n}.example.com", subscription=sub, days_ago=n
        )
    CompanyFactory()  # never scored, no instances
    Instance.objects.filter(uuid="uuid-m1").update(instance_type="geo_secondary")
    listings_refresh()
    expected = {c: stored(c) for c in Company.objects.values_list("pk", flat=True)}
    Company.objects.update(
        listing_license_utilization=7,
        listing_overall_rank=0,
        listing_unknown=9,
        listing_other=9,
        listing_last_ping_at=None,
    )
    migration = importlib.import_module("accounts.migrations.0007_company_listing")
    migration.fill(apps, SimpleNamespace(connection=connection))  # all it reads of the editor
    assert {c: stored(c) for c in expected} == expected
