"""The partitioning benchmark's own rules (``bench/partitioning.py``): which partitions a twin
gets, what one retention step removes, and that it never works in the book it copies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bench import partitioning as bp


def test_partitions_cover_every_ping_and_months_ahead_without_gaps():
    first = datetime(2024, 12, 9, 23, 30, tzinfo=UTC)
    last = datetime.now(UTC)
    for months in (1, 3):
        bounds = bp.partition_bounds(first, last, months)
        assert bounds[0][0] <= first.date() < bounds[0][1]
        assert all(hi == lo_next for (_, hi), (lo_next, _) in zip(bounds, bounds[1:], strict=False))
        assert all(bp.add_months(lo, months) == hi for lo, hi in bounds)
        # Pings a week after the newest (the write tests) and months beyond still have a home.
        ahead = (last + timedelta(days=30 * (bp.MONTHS_AHEAD - 1))).date()
        assert bounds[-1][1] > ahead
    quarters = bp.partition_bounds(first, last, 3)
    assert all(lo.month in (1, 4, 7, 10) for lo, _ in quarters)


def test_a_partition_name_gives_back_its_lower_bound():
    for lower, months in ((date(2025, 1, 1), 1), (date(2025, 12, 1), 1), (date(2025, 10, 1), 3)):
        assert bp._partition_lower(bp.partition_name(lower, months)) == lower
    assert bp.partition_name(date(2025, 4, 1), 3) == "instances_usageping_2025q2"


def test_a_retention_step_removes_the_first_whole_partition_and_the_part_before_it():
    # Data from 9 December: December is partly filled, January is the first whole month.
    first = datetime(2024, 12, 9, 8, 0, tzinfo=UTC)
    assert bp.retention_cutoff(first, 1) == date(2025, 2, 1)
    assert bp.retention_cutoff(first, 3) == date(2025, 4, 1)
    # Data from the first instant of a month: that month is whole and goes alone.
    assert bp.retention_cutoff(datetime(2025, 1, 1, tzinfo=UTC), 1) == date(2025, 2, 1)


@pytest.mark.parametrize(
    ("database", "template"),
    [("usage_portal_bench_large", "usage_portal_bench_large"), ("usage_portal", "x_bench")],
)
def test_it_refuses_to_work_in_the_book_itself_or_outside_a_bench_copy(database, template):
    # Refused before any connection is made: no database is needed for this test.
    with pytest.raises(SystemExit, match="refusing"):
        bp.ensure_database(database, template, fresh=False)
