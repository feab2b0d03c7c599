"""One home per rule: each rule changed once is seen the same way by every reader of it.

Page-side halves live with the pages' tests (``test_c360_*``, ``test_reports_*``); here: the
rules' homes against each other and against the engine.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts import permissions
from accounts.models import Company
from instances import versions
from instances.metrics import METRICS as REGISTRY
from instances.models import HealthInclusion, Instance, InstanceKind, InstanceType
from scoring import methodology, schemes, scorecard
from scoring.models import ScoreSnapshot
from scoring.services import active_scheme, companies_refresh, stale_ping_days
from tests.conftest import make_user
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------------------------------
# Health eligibility: the engine's function and the queryset filter are one rule


def test_health_eligible_filter_admits_exactly_what_the_engine_admits():
    company = CompanyFactory()
    expected = set()
    combos = itertools.product(InstanceKind.values, InstanceType.values, HealthInclusion.values)
    for n, (kind, instance_type, inclusion) in enumerate(combos):
        identity = (
            {"uuid": None, "namespace_id": n, "namespace_path": f"group-{n}"}
            if kind == InstanceKind.SAAS
            else {}
        )
        instance = InstanceFactory(
            kind=kind,
            instance_type=instance_type,
            health_inclusion=inclusion,
            subscription=None,
            company=company,
            **identity,
        )
        reason = methodology.health_exclusion(
            instance_type=instance_type,
            health_inclusion=inclusion,
            is_saas=kind == InstanceKind.SAAS,
        )
        if reason is None:
            expected.add(instance.pk)
    admitted = set(Instance.objects.health_eligible().values_list("pk", flat=True))
    assert admitted == expected
    # The SaaS rule is part of it: a never-labeled namespace counts, a self-managed one does not.
    assert Instance.objects.health_eligible().filter(kind="saas", instance_type="unknown").exists()
    assert (
        not Instance.objects.health_eligible()
        .filter(kind="self-managed", instance_type="unknown")
        .exists()
    )


# --------------------------------------------------------------------------------------------------
# The stale threshold: one setting feeding the scheme the engine scores with


@pytest.fixture
def quiet_account():
    """One Production instance whose only ping is 45 days old."""
    sub = SubscriptionFactory(licensed_seats=100)
    instance = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(
        instance,
        recorded_at=timezone.now() - dt.timedelta(days=45),
        metrics={"billable_users": 80},
        refresh=False,
    )
    return instance


@pytest.mark.parametrize(("days", "counted"), [(30, False), (60, True)])
def test_the_stale_setting_decides_whether_the_engine_scores_an_instance(
    quiet_account, days, counted
):
    with override_settings(STALE_INSTANCE_DAYS=days):
        assert stale_ping_days() == active_scheme().stale_ping_days == days
        companies_refresh(company_ids=[quiet_account.company_id], history=False)
    snap = ScoreSnapshot.objects.get(company=quiet_account.company, is_current=True)
    assert (quiet_account.pk in snap.detail["instance_ids"]) is counted
    assert (snap.license_utilization == pytest.approx(0.8)) is counted


def test_a_new_stale_threshold_rescores_even_with_the_same_inputs(quiet_account):
    company_id = quiet_account.company_id
    assert companies_refresh(company_ids=[company_id], history=False) == 1
    assert companies_refresh(company_ids=[company_id], history=False) == 0  # nothing changed
    with override_settings(STALE_INSTANCE_DAYS=30):
        assert companies_refresh(company_ids=[company_id], history=False) == 1


# --------------------------------------------------------------------------------------------------
# Versions: the store, the engine and the version report read them through one parser


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("15.4.2-ee", (15, 4)),
        ("v16.9", (16, 9)),
        ("12.10.0-pre", (12, 10)),
        ("16", None),
        ("", None),
    ],
)
def test_a_version_means_the_same_release_everywhere(text, release):
    assert versions.release(text) == release
    assert versions.release_of(versions.sort_key(versions.parse_version(text))) == release


def test_the_store_orders_instances_by_the_parsers_sort_key():
    instance = InstanceFactory()
    store_ping(instance, recorded_at=timezone.now(), version="v16.10.3-ee", refresh=False)
    instance.refresh_from_db()
    assert instance.version_sort == versions.sort_key((16, 10, 3))


def test_the_engine_explains_a_missing_metric_with_the_registrys_release():
    candidate = scorecard.InstanceCandidate(
        instance_id=1,
        name="old.example.com",
        is_saas=False,
        instance_type="production",
        health_inclusion="",
        subscription_id=1,
        plan="premium",
        licensed_seats=100,
        ping_id=1,
        recorded_at=timezone.now(),
        version="v13.12.0",  # a leading "v": the old engine-only parser did not read it
        metrics={"billable_users": None},
    )
    reason, explained = methodology._missing_reason("billable_users", candidate)
    assert explained and reason == "billable users not available before 14.0"


# --------------------------------------------------------------------------------------------------
# The metric registry: the engine knows a metric exactly as the registry declares it


def test_the_engines_metric_table_is_the_registry():
    engine = dict(schemes.METRICS)
    assert engine.pop(schemes.LICENSED_SEATS).label == "licensed seats"
    assert engine == {m.name: schemes.MetricInfo(m.reason_label, m.since) for m in REGISTRY}
    assert tuple(m for m in engine if m.endswith("_scans_l28")) == schemes.SCAN_METRICS


# --------------------------------------------------------------------------------------------------
# NULL-summing


def test_an_unknown_part_makes_a_total_unknown_never_smaller():
    assert methodology.sum_or_none([3, 4]) == 7
    assert methodology.sum_or_none([3, None, 4]) is None
    assert methodology.sum_or_none([]) is None
    assert methodology.sum_or_none([0, 0]) == 0


# --------------------------------------------------------------------------------------------------
# Who may change which account: the per-account rule and the filter agree for everyone


def test_the_editable_filter_and_the_per_account_rule_agree(ops, csm, other_csm, viewer):
    mine, theirs, nobodys = (
        CompanyFactory(csm=csm),
        CompanyFactory(csm=other_csm),
        CompanyFactory(csm=None),
    )
    inactive = make_user("gone_csm", "CSM")
    inactive.is_active = False
    inactive.save()
    for user in (ops, csm, other_csm, viewer, inactive):
        for perm in (permissions.LABEL, permissions.SENTIMENT):
            allowed = {
                c.pk for c in (mine, theirs, nobodys) if permissions.can_change(user, c, perm)
            }
            filtered = set(
                Company.objects.filter(pk__in=[mine.pk, theirs.pk, nobodys.pk])
                .editable_by(user, perm)
                .values_list("pk", flat=True)
            )
            assert filtered == allowed, (user.username, perm)
    assert permissions.can_edit(csm, mine) and not permissions.can_edit(csm, theirs)
    assert permissions.can_edit(ops, nobodys) and not permissions.can_edit(viewer, mine)
    assert not permissions.can_edit(inactive, CompanyFactory(csm=inactive))
