"""The benchmark's own rules: which targets a book is held to, the free-disk refusal, the
growth table. (The figures themselves come from ``make bench``, never from a test.)"""

from __future__ import annotations

import pytest

from bench import dataset, growth, targets
from bench.run import parse_args


@pytest.fixture(autouse=True)
def _standard_targets():
    yield
    targets.use("standard")


def test_the_large_book_is_held_to_the_issue_targets_and_the_standard_one_to_its_own():
    args = parse_args(["--large"])
    assert (args.companies, args.profile, args.http_clients) == (50_000, "large", 16)
    assert args.output.name == "results-large.json"
    targets.use("large")
    assert targets.target("c360.median") == "<= 10"
    assert targets.target("c360_cold.x floor") == "<= 3"
    assert targets.target("dashboard.p95") == "<= 200"
    assert targets.target("http.pings/s") == ">= 250"
    assert targets.target("dataset.seconds") == "<= 600"
    targets.use("standard")
    assert targets.target("c360.median") == "<= 50"  # make bench stays as it was
    assert targets.target("http.pings/s") == ">= 100"
    assert parse_args([]).output.name == "results.json"
    assert parse_args(["--companies", "20000"]).output.name == "results-20000.json"
    with pytest.raises(KeyError):
        targets.target("no.such figure")


class FakeAdmin:
    """The two questions room_check asks PostgreSQL: database sizes and the data directory."""

    def __init__(self, sizes_mb: dict[str, float], directory: str):
        self.sizes, self.directory = sizes_mb, directory

    def execute(self, sql, params=()):
        if "pg_database_size" in sql:
            value = self.sizes[params[0]] * 2**20
        elif "data_directory" in sql:
            value = self.directory
        else:  # _exists
            value = 1 if params[0] in self.sizes else None
        return type("Row", (), {"fetchone": lambda _: None if value is None else (value,)})()


def _free(monkeypatch, gb: float):
    usage = type("Usage", (), {"free": gb * 2**30})()
    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda _path: usage)


def test_a_book_the_disk_cannot_hold_is_refused_with_what_it_needs(monkeypatch, tmp_path):
    params = {"companies": 50_000, "weeks": 104, "seed": 7}
    _free(monkeypatch, 12)
    with pytest.raises(dataset.NoRoom) as refused:
        dataset.room_check(
            FakeAdmin({}, str(tmp_path)), name="bench_large", params=params, generate=True
        )
    message = str(refused.value)
    assert "50,000-account book" in message and "12.0 GB" in message
    assert "27.6 GB" in message  # 2.5 x 10.5 GB + 2 GB spare


def test_what_a_run_replaces_counts_as_room(monkeypatch, tmp_path):
    params = {"companies": 50_000, "weeks": 104, "seed": 7}
    _free(monkeypatch, 12)
    # The old book and its pristine copy are emptied and dropped first: room enough.
    admin = FakeAdmin({"bench_large": 10_000, "bench_large_pristine": 10_000}, str(tmp_path))
    said = dataset.room_check(admin, name="bench_large", params=params, generate=True)
    assert "12.0 GB free" in said
    # Restoring from the pristine copy needs one book's room, less the copy it replaces.
    admin = FakeAdmin({"bench_large_pristine": 10_000}, str(tmp_path))
    with pytest.raises(dataset.NoRoom, match="to restore"):
        _free(monkeypatch, 5)
        dataset.room_check(admin, name="bench_large", params=params, generate=False)


def _run(figures: dict) -> dict:
    return {"meta": {"started_at": "2026-12-04T03:00", "git": "abc"}, "areas": figures}


def test_the_growth_table_puts_the_books_side_by_side_with_their_slope():
    small = _run(
        {
            "dataset": {"size": {"pings": {"value": 1_600_000}}},
            "pages: floor": {"floor (base.html)": {"median": {"value": 5.0}}},
        }
    )
    large = _run(
        {
            "dataset": {"size": {"pings": {"value": 16_000_000}}},
            "pages: floor": {"floor (base.html)": {"median": {"value": 5.5}}},
        }
    )
    text = growth.table({"5,000": small, "50,000": large})
    pings = next(line for line in text.splitlines() if line.startswith("| pings stored"))
    floor = next(line for line in text.splitlines() if line.startswith("| floor page"))
    assert "1,600,000 | — | 16,000,000 | linear (10.0×)" in pings
    assert "flat (1.1×)" in floor


def test_a_commands_peak_rss_is_its_own_not_the_size_of_the_bench_that_started_it():
    """Linux carries the parent's size into a child's ``ru_maxrss`` across exec: the bench,
    large after reading the book, once reported it as every command's peak."""
    import os
    import sys

    from bench import procs

    ballast = bytearray(400 * 2**20)  # the bench after reading a large book's instances
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident
    small = "b = bytearray(30 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    done = procs.run([sys.executable, "-c", small], env=dict(os.environ), timeout=60)
    del ballast

    assert done.ok
    assert 30 <= done.max_rss_mb < 150
    assert done.cpu_seconds > 0


def test_a_run_records_the_machines_speed_at_its_start():
    from bench.run import _meta

    meta = _meta(parse_args(["--quick"]), "postgres:///usage_portal_bench", "redis://x/0")

    speed = meta["machine"]["python_loop_ms_at_start"]
    assert isinstance(speed, float) and 1 < speed < 60_000
