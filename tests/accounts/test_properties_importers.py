"""Property-based tests of the file importers: ``import_crm``, ``ingest_saas``, ``ingest_pings``.

For arbitrary CSV and JSON contents (arbitrary headers, NUL, invalid UTF-8 bytes, huge numbers,
odd dates), a command either returns or ends with ``CommandError`` — never a traceback; every
problem is printed as a line naming the file and the problem; and nothing is half done: rows
counted as imported exist, rows reported as errors do not, and a refused file changes nothing
(but the rejected payload kept for ops).

Each example runs in its own transaction, rolled back after it (hypothesis' Django
``TestCase``), and writes its files to a fresh temporary folder.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import orjson
from django.utils import timezone
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from accounts.importers import KINDS, read_csv
from accounts.models import Company, Meeting, Subscription, SupportTicketMonth
from instances.models import Instance, License, RejectedPayload, UsagePing
from instances.parsing import PingRejected, parse_ping
from instances.saas import parse_saas_row, read_rows
from instances.transport import PayloadError, decode_body
from tests.conftest import make_user
from tests.factories import CompanyFactory, SubscriptionFactory
from tests.ingest_support import command_run, payload
from tests.instances.test_properties_parsing import (
    KNOWN_CRM_IDS,
    KNOWN_SUBSCRIPTIONS,
    any_bodies,
    csv_files,
    mutated_payloads,
    saas_json_files,
)

DB = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CRM_TABLES = (Company, Subscription, License, SupportTicketMonth, Meeting)
PING_TABLES = (UsagePing, Instance, RejectedPayload)


def mostly(main, other):
    """`main` three times in four, else `other` (one_of would flatten and weigh by branches)."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda n: main if n else other)


#: Kinds with number columns first: their odd numbers are where a reader is likeliest to fail.
crm_files = mostly(
    csv_files(kinds=("support_tickets", "subscriptions", (*KINDS["companies"], "prioritization")))
    | csv_files(kinds=tuple(KINDS)),
    csv_files() | st.binary(max_size=100),
)
#: What the csv module itself refuses: a bare CR outside quotes, a cell over its field limit.
crm_files_csv_refuses = csv_files(kinds=tuple(KINDS), bare_cr=True) | csv_files(
    kinds=tuple(KINDS), huge_cells=True
)
saas_files = mostly(
    csv_files(kinds=("saas",)) | saas_json_files(), csv_files() | st.binary(max_size=100)
)
saas_files_csv_refuses = csv_files(kinds=("saas",), bare_cr=True) | csv_files(
    kinds=("saas",), huge_cells=True
)
#: Few examples and no shrinking: each failing one is a 128 KiB file or a one-byte change, and
#: shrinking them through a command and a database takes minutes.
FEW = settings(DB, max_examples=20, phases=[Phase.explicit, Phase.generate])


def counts(models) -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in models}


def problem_lines(stderr: str, path: str) -> list[str]:
    """stderr's lines, each checked to name the file and say something after it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        assert line.startswith(f"{path}:"), line
        assert line[len(path) + 1 :].strip(" :"), line
    return lines


def run(name: str, *args):
    """(stdout, stderr, exit status); a traceback propagates and fails the example."""
    out, err, status, _ = command_run(name, *args)
    assert status in (0, 1), status
    return out, err, status


def in_tmp(data: bytes, name: str):
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.write_bytes(data)
    return folder, str(path)


# --------------------------------------------------------------------------------------------------
# import_crm

SUMMARY_RE = re.compile(
    r"^(?P<path>.+): (?P<kind>[a-z ]+): (?P<created>\d+) created, (?P<updated>\d+) updated, "
    r"(?P<unchanged>\d+) unchanged, (?P<errors>\d+) with errors",
    re.MULTILINE,
)
KIND_TABLE = {
    "companies": Company,
    "subscriptions": Subscription,
    "license_mappings": License,
    "support_tickets": SupportTicketMonth,
    "meetings": Meeting,
}


def imported(row) -> bool:
    """Whether the database holds what `row` asked for."""
    name = type(row).__name__
    if name == "CompanyRow":
        return Company.objects.filter(crm_account_id=row.crm_account_id, name=row.name).exists()
    if name == "SubscriptionRow":
        return Subscription.objects.filter(
            name=row.name, company__crm_account_id=row.crm_account_id
        ).exists()
    if name == "LicenseMappingRow":
        return License.objects.filter(
            md5=row.license_md5, subscription__name=row.subscription_name
        ).exists()
    if name == "TicketRow":
        return SupportTicketMonth.objects.filter(
            company__crm_account_id=row.crm_account_id, month=row.month, tickets=row.tickets
        ).exists()
    if name == "MeetingRow":
        return Meeting.objects.filter(
            company__crm_account_id=row.crm_account_id, day=row.day
        ).exists()
    return Company.objects.filter(crm_account_id=row.crm_account_id, roi=row.roi).exists()


class ImportCrmProperties(TestCase):
    @classmethod
    def setUpTestData(cls):
        csm = make_user("csm_user", "CSM")
        for crm_id, subscription in zip(KNOWN_CRM_IDS, KNOWN_SUBSCRIPTIONS, strict=True):
            SubscriptionFactory(
                name=subscription, company=CompanyFactory(crm_account_id=crm_id, csm=csm)
            )

    @settings(DB, max_examples=100)
    @given(data=crm_files)
    def test_import_crm_imports_whole_rows_or_names_each_problem(self, data):
        self._check(data)

    @FEW
    @given(data=crm_files_csv_refuses)
    def test_import_crm_names_what_the_csv_reader_refuses(self, data):
        self._check(data)

    def _check(self, data):
        folder, path = in_tmp(data, "crm.csv")
        with folder:
            try:
                kind, rows, _ = read_csv(data)
            except ValueError:
                kind, rows = None, []
            before_rows = {id(row): imported(row) for row in rows}
            before = counts(CRM_TABLES)
            out, err, status = run("import_crm", path)
            after = counts(CRM_TABLES)
        problems = problem_lines(err, path)
        assert status == (1 if problems else 0), (status, problems)
        summary = SUMMARY_RE.search(out)
        if summary is None:  # the file as a whole was refused
            event("file refused")
            assert len(problems) == 1 and not problems[0].startswith(f"{path}:line ")
            assert after == before
            return
        event(f"{kind}: {len(rows)} row(s) read")
        numbers = {k: int(v) for k, v in summary.groupdict().items() if v.isdigit()}
        assert numbers["errors"] == len(problems)
        table = KIND_TABLE.get(kind)
        if table is not None:
            assert after[table.__name__] - before[table.__name__] == numbers["created"]
        untouched = {n for n in before if table is None or n != table.__name__}
        assert {n: after[n] for n in untouched} == {n: before[n] for n in untouched}
        # A row named in an error line is not imported; every other row read is.
        error_lines = {
            int(m.group(1)) for m in re.finditer(rf"^{re.escape(path)}:line (\d+):", err, re.M)
        }
        done = [row for row in rows if row.line not in error_lines]
        for row in rows:
            if row.line in error_lines:
                assert not imported(row) or before_rows[id(row)], row
            else:
                assert imported(row) or "left as is" in out, row
        assert numbers["created"] + numbers["updated"] + numbers["unchanged"] == len(done)

    @settings(DB, max_examples=30)
    @given(
        good=st.integers(min_value=1, max_value=6),
        bad_at=st.integers(min_value=0, max_value=6),
        line_end=st.sampled_from(["\n", "\r\n"]),
    )
    def test_a_row_the_csv_reader_refuses_is_named_and_the_others_still_count(
        self, good, bad_at, line_end
    ):
        # One data row holds a bare CR outside quotes (a hand-edited export); the csv module
        # refuses that row. Every other row must still be imported or named on its own line.
        bad_at = min(bad_at, good)
        lines = ["crm_account_id,name,segment,csm,customer_since"]
        lines += [f"001NEW{i:06d},Company {i},Strategic,," for i in range(good)]
        lines.insert(bad_at + 1, "001BAD000000,cr\rinside,Strategic,,")
        folder, path = in_tmp((line_end.join(lines) + line_end).encode(), "crm.csv")
        with folder:
            out, err, status = run("import_crm", path)
        problems = problem_lines(err, path)
        named = {int(m.group(1)) for m in re.finditer(r":line (\d+):", err)}
        bad_line = bad_at + 2
        assert status == 1 and problems
        assert bad_line in named, (bad_line, problems)
        assert not Company.objects.filter(crm_account_id="001BAD000000").exists()
        for i in range(good):
            line = i + 2 + (i >= bad_at)
            crm_id = f"001NEW{i:06d}"
            exists = Company.objects.filter(crm_account_id=crm_id).exists()
            assert exists != (line in named), (line, crm_id, exists, problems)


# --------------------------------------------------------------------------------------------------
# ingest_saas

SAAS_SUMMARY_RE = re.compile(
    r"^(?P<path>.+): (?P<items>\d+) row\(s\): (?P<accepted>\d+) accepted, "
    r"(?P<duplicates>\d+) duplicates, (?P<unmapped>\d+) unmapped, (?P<rejected>\d+) rejected$",
    re.MULTILINE,
)


class IngestSaasProperties(TestCase):
    @classmethod
    def setUpTestData(cls):
        SubscriptionFactory(name=KNOWN_SUBSCRIPTIONS[0], deployment="saas")

    @settings(DB, max_examples=100)
    @given(data=saas_files, name=st.sampled_from(["export.csv", "export.json", "export.jsonl"]))
    def test_ingest_saas_stores_whole_rows_or_names_each_problem(self, data, name):
        self._check(data, name)

    @FEW
    @given(data=saas_files_csv_refuses)
    def test_ingest_saas_names_what_the_csv_reader_refuses(self, data):
        self._check(data, "export.csv")

    def _check(self, data, name):
        folder, path = in_tmp(data, name)
        with folder:
            before = counts(PING_TABLES)
            out, err, status = run("ingest_saas", path)
            after = counts(PING_TABLES)
        problems = problem_lines(err, path)
        assert status == (1 if problems else 0)
        summary = SAAS_SUMMARY_RE.search(out)
        if summary is None:  # refused whole: kept for ops, nothing else
            event("file refused")
            assert len(problems) == 1
            assert after == before | {"RejectedPayload": before["RejectedPayload"] + 1}
            return
        n = {k: int(v) for k, v in summary.groupdict().items() if v.isdigit()}
        event(f"{n['accepted']} of {n['items']} row(s) accepted")
        assert n["accepted"] + n["duplicates"] + n["rejected"] == n["items"]
        assert n["rejected"] == len(problems)
        assert after["UsagePing"] - before["UsagePing"] == n["accepted"]
        assert after["RejectedPayload"] - before["RejectedPayload"] == n["rejected"]
        # Each row not listed as rejected is stored, under its namespace and snapshot date.
        rejected = {line.split(":", 2)[1] for line in problems}
        now = timezone.now()
        for number, (location, row) in enumerate(read_rows(data, filename=name), start=1):
            if location in rejected:
                continue
            parsed = parse_saas_row(row, line=number, now=now)
            assert UsagePing.objects.filter(
                instance__namespace_id=parsed.namespace_id, recorded_at=parsed.recorded_at
            ).exists(), location


# --------------------------------------------------------------------------------------------------
# ingest_pings

AN_HOUR_AGO = timezone.now() - timedelta(hours=1)
GZIP_MAGIC = b"\x1f\x8b"
PINGS_SUMMARY_RE = re.compile(
    r"^(?P<items>\d+) file\(s\) in [\d.]+s \(\d+ files/s\): (?P<accepted>\d+) accepted, "
    r"(?P<duplicates>\d+) duplicates, (?P<unmapped>\d+) unmapped, (?P<rejected>\d+) rejected$",
    re.MULTILINE,
)
ping_files = st.lists(
    mostly(
        st.one_of(
            mutated_payloads(base=payload(recorded_at=AN_HOUR_AGO)),
            st.uuids().map(lambda u: orjson.dumps(payload(uuid=str(u), recorded_at=AN_HOUR_AGO))),
            st.uuids().map(
                lambda u: gzip.compress(orjson.dumps(payload(uuid=str(u), recorded_at=AN_HOUR_AGO)))
            ),
        ),
        any_bodies,
    ),
    min_size=1,
    max_size=4,
)


def _identity(data: bytes):
    try:
        parsed = parse_ping(decode_body(data, content_encoding=None, max_bytes=10**8))
    except (PayloadError, PingRejected):
        return None
    return parsed.uuid, parsed.hostname, parsed.recorded_at


class IngestPingsProperties(TestCase):
    @settings(DB, max_examples=60)
    @given(files=ping_files)
    def test_ingest_pings_stores_whole_files_or_names_each_problem(self, files):
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for index, data in enumerate(files):
                suffix = ".json.gz" if data[:2] == GZIP_MAGIC else ".json"
                path = Path(folder) / f"ping-{index}{suffix}"
                path.write_bytes(data)
                paths.append(str(path))
            before = counts(PING_TABLES)
            out, err, status = run("ingest_pings", folder, "--workers", "1", "--no-progress")
            after = counts(PING_TABLES)
        problems = [line for line in err.splitlines() if line.strip()]
        summary = PINGS_SUMMARY_RE.search(out)
        assert summary is not None, out
        n = {k: int(v) for k, v in summary.groupdict().items()}
        event(f"{n['accepted']} of {n['items']} file(s) accepted")
        assert n["items"] == len(files)
        assert n["accepted"] + n["duplicates"] + n["rejected"] == n["items"]
        assert status == (1 if n["rejected"] else 0)
        assert len(problems) == n["rejected"]
        rejected_paths = set()
        for line in problems:
            path, _, reason = line.partition(": ")
            assert path in paths and reason.strip(), line
            rejected_paths.add(path)
        assert after["UsagePing"] - before["UsagePing"] == n["accepted"]
        assert after["RejectedPayload"] - before["RejectedPayload"] == n["rejected"]
        # Every file not rejected is one whole ping; a rejected one left none behind.
        for path, data in zip(paths, files, strict=True):
            identity = _identity(data)
            if identity is None:
                assert path in rejected_paths, path
                continue
            uuid, hostname, recorded_at = identity
            stored = UsagePing.objects.filter(
                instance__uuid=uuid, instance__hostname=hostname, recorded_at=recorded_at
            ).count()
            assert stored == (0 if path in rejected_paths else 1), (path, stored)
