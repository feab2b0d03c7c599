"""generate_load_data builds a large-book-shaped dataset: counts, variety, consistent rows.

Runs at a small size on whatever database the suite uses: bulk_create on SQLite, COPY with its
indexes and keys rebuilt on PostgreSQL (``make test-integration``).
"""

import ast
import io
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Min

from accounts.models import Company, Subscription
from bench.dataset import GENERATOR_FILES
from bench.procs import ROOT
from instances.metrics import METRIC_NAMES
from instances.models import Instance, LabelChange, License, MonthlyUsage, UsagePing
from scoring.models import ScoreSnapshot
from usage_portal.sampledata.loadgen import build_load_book, version_facts

END = date(2026, 3, 1)
ARGS = {"companies": 60, "weeks": 12, "namespaces": 20, "csms": 4, "end": END}


def _generate(**extra) -> str:
    out = io.StringIO()
    call_command("generate_load_data", **ARGS, **extra, stdout=out)
    return out.getvalue()


def _digest() -> tuple:
    return (
        UsagePing.objects.count(),
        MonthlyUsage.objects.count(),
        sorted(
            (uuid or "", namespace or 0, n, last)
            for uuid, namespace, n, last in UsagePing.objects.values(
                "instance__uuid", "instance__namespace_id"
            )
            .annotate(n=Count("id"), last=Max("recorded_at"))
            .values_list("instance__uuid", "instance__namespace_id", "n", "last")
        ),
        tuple(
            UsagePing.objects.order_by(
                "instance__uuid", "instance__namespace_id", "recorded_at"
            ).values_list("umau", "ci_builds_l28")[:300]
        ),
    )


def test_load_book_layout_has_the_demo_variety_at_scale():
    book = build_load_book(companies=1000, weeks=20, end=END)
    sm = [i for i in book.instances if i.kind == "self-managed"]
    saas = [i for i in book.instances if i.kind == "saas"]
    assert len(saas) == 400  # 40% of companies by default
    assert 2.6 <= len(sm) / 1000 <= 3.6  # about three self-managed instances per company
    assert {c.segment for c in book.companies} == {"Strategic", "Growth", "Scale", "Digital"}
    assert {c.trend for c in book.companies} == {"growing", "flat", "declining"}
    assert {s.plan for s in book.subscriptions} == {"premium", "ultimate"}
    assert {i.label for i in sm} == {
        "production",
        "non_production",
        "obsolete",
        "geo_secondary",
        "",
    }
    assert {int(v.split(".")[0]) for i in sm for v in i.versions} >= {13, 14, 15, 16, 17}
    sizes = Counter(i.company.crm_account_id for i in book.instances)
    assert sizes.most_common(1)[0] == (book.companies[0].crm_account_id, 81)  # the largest
    assert any(i.unmapped for i in sm) and any(i.stop_weeks_ago for i in sm)
    assert any(i.pending for i in sm) and any(i.opt_out for i in sm)
    assert len(sizes) < 1000  # some accounts have no usage data at all


def test_version_facts_follow_the_service_ping_key_lifetimes():
    old = version_facts("13.12.15-ee")
    assert old.has_md5 and not old.has_sha256
    assert METRIC_NAMES.index("billable_users") in old.missing
    both, new = version_facts("15.4.0-ee"), version_facts("17.6.2-ee")
    assert both.has_md5 and both.has_sha256
    # L28 pipelines came with 15.10 (the metric's milestone); 15.4 sends everything else.
    assert both.missing == (METRIC_NAMES.index("ci_internal_pipelines_l28"),)
    assert not version_facts("15.10.0-ee").missing
    assert new.has_sha256 and not new.has_md5
    assert new.sort_key == 17_006_002


@pytest.mark.django_db
def test_generate_load_data_builds_a_consistent_book(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "load-pass")
    out = _generate()
    book = build_load_book(**ARGS)

    assert Company.objects.count() == 60
    assert Subscription.objects.count() == len(book.subscriptions)
    assert Instance.objects.count() == len(book.instances)
    assert Instance.objects.filter(kind="saas").count() == 20
    assert UsagePing.objects.count() == book.ping_count
    assert "raw_payload is left NULL" in out and "score recompute" in out
    assert not UsagePing.objects.exclude(raw_payload=None).exists()

    # Variety reaches the database.
    assert set(Instance.objects.values_list("instance_type", flat=True)) == {
        "production",
        "non_production",
        "unknown",
        "obsolete",
        "geo_secondary",
    }
    assert UsagePing.objects.filter(source="saas").exists()
    assert UsagePing.objects.unmapped().exists()
    assert License.objects.filter(subscription__isnull=True).exists()
    assert UsagePing.objects.filter(version__startswith="13.", billable_users__isnull=True).exists()
    assert not UsagePing.objects.filter(
        version__startswith="13.", billable_users__isnull=False
    ).exists()
    assert UsagePing.objects.filter(license_md5="", license_sha256__gt="").exists()  # 16.2+

    # No duplicate pings; each instance's dates and version follow its pings.
    assert not (
        UsagePing.objects.values("instance", "recorded_at").annotate(n=Count("id")).filter(n__gt=1)
    )
    spans = {
        r["instance"]: r
        for r in UsagePing.objects.values("instance").annotate(
            first=Min("recorded_at"), last=Max("recorded_at")
        )
    }
    for inst in Instance.objects.all():
        span = spans[inst.pk]
        assert (inst.first_ping_at, inst.last_ping_at) == (span["first"], span["last"])
        newest = inst.pings.get(recorded_at=inst.last_ping_at)
        assert inst.version == newest.version
        assert inst.version_sort == version_facts(newest.version).sort_key
        assert inst.subscription_id == newest.subscription_id

    # MonthlyUsage is exactly the last ping of each calendar month.
    expected = {}
    for ping in UsagePing.objects.only("id", "instance_id", "recorded_at"):
        key = (ping.instance_id, ping.recorded_at.date().replace(day=1))
        if key not in expected or ping.recorded_at > expected[key][1]:
            expected[key] = (ping.id, ping.recorded_at)
    monthly = {(m.instance_id, m.month): m for m in MonthlyUsage.objects.select_related("ping")}
    assert set(monthly) == set(expected)
    for key, row in monthly.items():
        assert row.ping_id == expected[key][0]
        assert row.recorded_at == row.ping.recorded_at and row.version == row.ping.version
        assert row.company_id == row.instance.company_id
        assert all(getattr(row, n) == getattr(row.ping, n) for n in METRIC_NAMES)

    # The audit trail, the pending queue, the logins and the scores.
    labeled = Instance.objects.filter(kind="self-managed").exclude(instance_type="unknown")
    assert LabelChange.objects.filter(status="applied", field="instance_type").count() == (
        labeled.count()
    )
    assert LabelChange.objects.pending().count() == sum(1 for i in book.instances if i.pending)
    for username in ("ops", "csm1", "csm4", "viewer"):
        assert authenticate(username=username, password="load-pass") is not None
    assert ScoreSnapshot.objects.filter(is_current=True).count() == 60


@pytest.mark.django_db
def test_generate_load_data_refuses_to_mix_books_and_is_deterministic_on_reset():
    _generate(no_scores=True)
    first = _digest()
    with pytest.raises(CommandError, match="--reset"):
        _generate(no_scores=True)
    _generate(no_scores=True, reset=True)
    assert _digest() == first


def _package_modules_run_by(path: str) -> set[str]:
    """``path`` and every module of its package it imports, directly or not."""
    package = str(Path(path).parent).replace("/", ".")
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        folder = (ROOT / current).parent.relative_to(ROOT)
        for node in ast.walk(ast.parse((ROOT / current).read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if node.level == 1:
                todo.append(str(folder / f"{node.module}.py"))
            elif node.level == 0 and node.module.startswith(f"{package}."):
                todo.append(node.module.replace(".", "/") + ".py")
    return seen


def test_the_bench_dataset_digest_covers_every_load_generator_module():
    """bench/dataset.py regenerates its pristine copy when these files change: each must exist, and
    every module the load generator runs must be among them (payloads decides which metrics a
    version's pings leave NULL)."""
    assert all((ROOT / name).is_file() for name in GENERATOR_FILES)
    assert _package_modules_run_by("usage_portal/sampledata/bulk_load.py") <= set(GENERATOR_FILES)


def test_ping_parts_make_the_same_rows_as_one_pass_with_ids_that_never_collide():
    """The bulk load generates the book in parts, one process each: together the parts make
    exactly the one-pass rows, with contiguous ids, and monthly rows point at their own ping."""
    from usage_portal.sampledata.loadgen import BookIds, PingRows, ping_parts

    book = build_load_book(**ARGS)
    ids = BookIds(
        instance=[1000 + spec.index for spec in book.instances],
        subscription={s.name: n for n, s in enumerate(book.subscriptions, 1)},
        license={key: n for n, key in enumerate(book.licenses, 1)},
        company={c.crm_account_id: n for n, c in enumerate(book.companies, 1)},
    )

    def rows(part=None):
        monthly = []
        pings = list(PingRows(book, ids, monthly=monthly.append, part=part))
        return pings, monthly

    whole_pings, whole_monthly = rows()
    parts = ping_parts(book, 3)
    assert len(parts) == 3
    assert [p.start for p in parts] == [0, parts[0].stop, parts[1].stop]
    assert parts[-1].stop == len(book.instances)
    split = [rows(part) for part in parts]
    pings = [row for part_pings, _ in split for row in part_pings]
    monthly = [row for _, part_monthly in split for row in part_monthly]
    for part, (part_pings, _) in zip(parts, split, strict=True):
        assert part.pings == len(part_pings) > 0

    # The same pings (everything but the id) and the same monthly rows (but their ids).
    assert sorted(r[1:] for r in pings) == sorted(r[1:] for r in whole_pings)
    assert sorted(r[1:4] + r[5:] for r in monthly) == sorted(r[1:4] + r[5:] for r in whole_monthly)
    # Ids: 1..N, once each, for pings and for monthly rows.
    assert sorted(r[0] for r in pings) == list(range(1, len(whole_pings) + 1))
    assert sorted(r[0] for r in monthly) == list(range(1, len(whole_monthly) + 1))
    # A monthly row's ping is that instance's ping of that month.
    by_id = {r[0]: r for r in pings}
    for row in monthly:
        ping = by_id[row[4]]
        assert (ping[1], ping[2]) == (row[1], row[5])
