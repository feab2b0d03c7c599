"""``manage.py ingest_pings PATH...``: files and folders, summary, rejections, exit status."""

from __future__ import annotations

import gzip
import io
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command
from django.db import DataError

from instances.management.commands.ingest_pings import Command
from instances.models import Instance, License, RejectedPayload, UsagePing
from instances.parsing import read_payload_file_or_reason
from instances.services import files
from tests.factories import SubscriptionFactory
from tests.ingest_support import (  # noqa: F401  (fixtures are used by name)
    WHEN,
    command_run,
    on_each_database,
    payload,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_each_database")]


def ingest(*args) -> tuple[str, str, int]:
    """(stdout, stderr then the CommandError's message, exit status) of the command."""
    out, err, status, error = command_run("ingest_pings", *args, "--no-progress")
    return out, err + (f"CommandError: {error}\n" if error else ""), status


def write(path: Path, body: dict | bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def weekly(instance: int, week: int, **kw) -> dict:
    return payload(
        uuid=f"00000000-0000-0000-0000-{instance:012d}",
        recorded_at=WHEN + timedelta(weeks=week),
        full_size=True,
        **kw,
    )


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three instances x two weeks, nested folders, .json and .json.gz, plus an unrelated file."""
    root = tmp_path / "pings"
    for instance in range(3):
        for week in range(2):
            write(
                root / f"i{instance}" / "deep" / f"w{week}.json{'.gz' if week else ''}",
                weekly(instance, week),
                gz=bool(week),
            )
    (root / "README.txt").write_text("not a ping")
    return root


def test_folder_is_loaded_recursively_with_a_summary(folder):
    out, err, status = ingest(folder)

    assert status == 0
    assert err == ""
    assert "6 file(s)" in out
    assert "6 accepted, 0 duplicates, 6 unmapped, 0 rejected" in out
    assert UsagePing.objects.count() == 6
    assert set(UsagePing.objects.values_list("source", flat=True)) == {"bulk"}
    assert Instance.objects.count() == 3


def test_loading_the_same_files_again_stores_nothing_new(folder):
    ingest(folder)
    out, _, status = ingest(folder, folder / "i0" / "deep" / "w0.json")  # a file named twice

    assert status == 0
    assert "0 accepted, 6 duplicates" in out
    assert UsagePing.objects.count() == 6


def test_rejected_files_are_listed_kept_and_make_the_exit_status_1(folder, tmp_path):
    bad = write(folder / "broken.json", b'{"uuid": "x", ')
    array = write(folder / "array.json", orjson.dumps([1, 2]))
    bomb = write(folder / "bomb.json.gz", b" " * 30_000_000, gz=True)
    missing = tmp_path / "nowhere"

    out, err, status = ingest(folder, missing)

    assert status == 1
    assert "6 accepted, 0 duplicates, 6 unmapped, 4 rejected" in out
    lines = err.splitlines()
    assert f"{missing}: no such file or folder" in lines
    assert any(line.startswith(f"{bad}: malformed JSON") for line in lines)
    assert f"{array}: payload is a JSON array, not an object" in lines
    assert any(line.startswith(f"{bomb}: decompressed body exceeds the limit") for line in lines)
    assert "CommandError: 4 file(s) rejected, listed above; the others were stored" in lines
    assert UsagePing.objects.count() == 6  # the good files were stored all the same
    kept = dict(RejectedPayload.objects.filter(source="bulk").values_list("filename", "reason"))
    assert kept[str(array)] == "payload is a JSON array, not an object"
    assert len(kept) == 4


def test_small_batches_give_the_same_result(folder):
    write(folder / "dup" / "copy.json", weekly(0, 0))  # same ping as i0/deep/w0.json

    out, _, status = ingest("--batch-size", "2", folder)

    assert status == 0
    assert "6 accepted, 1 duplicates" in out
    assert UsagePing.objects.count() == 6


def test_mapped_pings_queue_one_refresh_at_the_end(
    tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from scoring import tasks

    calls = []
    monkeypatch.setattr(
        tasks.refresh_companies, "apply_async", lambda args, *_, **__: calls.append(tuple(args))
    )
    subs = [SubscriptionFactory(), SubscriptionFactory()]
    for n in range(30):
        write(tmp_path / f"{n}.json", weekly(n, 0, subscription_id=subs[n % 2].name))

    with django_capture_on_commit_callbacks(execute=True):
        out, _, status = ingest("--batch-size", "7", tmp_path)

    assert status == 0
    assert "30 accepted, 0 duplicates, 0 unmapped" in out
    assert calls == [(sorted(s.company_id for s in subs), "bulk load", None, True)]


def test_a_file_the_database_refuses_is_rejected_alone(folder, monkeypatch):
    real = files.pings_store

    def picky(*, inputs, **kw):
        if any(i.label.endswith("i1/deep/w0.json") for i in inputs):
            raise DataError("value out of range")
        return real(inputs=inputs, **kw)

    monkeypatch.setattr(files, "pings_store", picky)

    out, err, status = ingest(folder)

    assert status == 1
    assert "5 accepted" in out and "1 rejected" in out
    assert err.splitlines()[0] == (
        f"{folder / 'i1' / 'deep' / 'w0.json'}: a value does not fit the database"
    )


def test_help_documents_the_exit_status():
    text = Command().create_parser("manage.py", "ingest_pings").format_help()
    assert "Exit status: 0 when no file was rejected, 1 when some" in " ".join(text.split())
    assert "--no-progress" in text


def test_progress_bar_stays_off_when_stderr_is_not_a_terminal(folder):
    err = io.StringIO()
    call_command("ingest_pings", str(folder), stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""


def test_many_files_are_read_by_worker_processes_with_the_same_result(tmp_path):
    assert files.PROCESS_POOL_FROM <= 120
    for n in range(120):
        uuid = f"00000000-0000-0000-0000-{n:012d}"
        body = payload("15.8.0-ee", uuid=uuid, md5=f"{n:032x}", sha256=None)
        write(tmp_path / f"{n:03d}.json{'.gz' if n % 2 else ''}", body, gz=bool(n % 2))
    write(tmp_path / "zz-broken.json", b"{")

    out, err, status = ingest("--batch-size", "50", "--workers", "2", tmp_path)

    assert status == 1
    assert "120 accepted, 0 duplicates, 120 unmapped, 1 rejected" in out
    assert err.splitlines()[0].startswith(f"{tmp_path / 'zz-broken.json'}: malformed JSON")
    assert UsagePing.objects.count() == 120
    assert License.objects.count() == 120


def test_symbolic_links_are_never_followed(tmp_path):
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    exports = tmp_path / "exports"
    write(exports / "real.json", weekly(1, 0))
    (exports / "linked.json").symlink_to(secret)
    (exports / "linked_folder").symlink_to(secret.parent, target_is_directory=True)
    (secret.parent / "inside.json").write_text("{}")

    out, err, status = ingest(exports, tmp_path / "exports" / "linked.json")

    assert status == 1
    assert f"{exports / 'linked.json'}: a symbolic link, not followed" in err
    assert UsagePing.objects.count() == 1
    for kept in RejectedPayload.objects.all():
        assert kept.raw is None  # nothing of the link's target is stored
        assert "symbolic link" in kept.reason


def test_a_link_swapped_in_after_listing_is_refused_when_read(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0\n")
    link = tmp_path / "ping.json"
    link.symlink_to(secret)

    parsed, blob, reason = read_payload_file_or_reason(str(link), max_bytes=1024)

    assert (parsed, blob) == (None, None)
    assert reason.startswith("cannot read the file")
