"""Property-based tests of the pure ingest core: every bad input is refused by name, never raised.

For arbitrary JSON text (deep nesting, numbers past 64 bits and past double range, NaN/Infinity
tokens, NUL and lone-surrogate escapes, wrong types for each key), arbitrary bytes and mutated
real payloads, each reader either returns a value or raises only its documented refusal type
(``PayloadError``, ``PingRejected``, ``ImportError_``) with a non-empty reason; whatever it
returns is storable: text encodes to UTF-8 and holds no NUL, numbers are finite and within a
64-bit column, and a ping's clock is never ahead of ``now`` by more than ``CLOCK_SKEW``.

The strategies here are shared by the endpoint and importer properties
(``tests/web/test_properties_endpoints.py``, ``tests/accounts/test_properties_importers.py``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from accounts.importers import KINDS, ImportError_, read_csv
from instances.companions import parse_ping_error, parse_ping_metadata
from instances.metrics import METRIC_NAMES, METRICS
from instances.parsing import (
    CLOCK_SKEW,
    EARLIEST_RECORDED_AT,
    MAX_LENGTHS,
    PingRejected,
    parse_ping,
)
from instances.saas import REQUIRED_COLUMNS, parse_saas_row, read_rows
from instances.transport import PayloadError, decode_body, inflate_body, loads_json
from tests.ingest_support import PINGS, payload

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
INT64_MAX = 2**63 - 1
LIMIT = 2 * 1024 * 1024

# derandomize: CI replays the same examples; deadline off: the 225 KB fixture is slow to mutate.
PURE = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------------------------------
# Hostile JSON, as text: Python's own encoder cannot write NaN tokens, 1e400 or a lone surrogate.


class Raw(str):
    """JSON text put into a document as it is."""

    @classmethod
    def quoted(cls, text: str) -> Raw:
        return cls(json.dumps(text))


class Blob(bytes):
    """Bytes whose repr collapses long runs, so a shrunk failure prints as a short expression."""

    def __repr__(self) -> str:
        parts = re.split(rb"((.)\2{63,})", bytes(self), flags=re.DOTALL)
        shown, index = [], 0
        while index < len(parts):
            shown.append(repr(parts[index]))
            if index + 2 < len(parts):
                run = parts[index + 1]
                shown.append(f"{bytes(run[:1])!r} * {len(run)}")
            index += 3
        return " + ".join(p for p in shown if p != "b''") or "b''"


def to_json(node: object) -> str:
    """JSON text of a tree whose leaves may be `Raw` tokens (dict keys too)."""
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, dict):
        items = (
            f"{k if isinstance(k, Raw) else json.dumps(k)}:{to_json(v)}" for k, v in node.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(node, list):
        return "[" + ",".join(to_json(item) for item in node) + "]"
    return json.dumps(node)


def _ts(moment: datetime) -> Raw:
    return Raw(json.dumps(moment.isoformat()))


NUMBER_TOKENS = [
    "1e400",
    "-1e400",
    "1e-400",
    "1" + "0" * 400,
    "-" + "9" * 400,
    str(2**64),
    str(2**63),
    str(INT64_MAX),
    str(-(2**63) - 1),
    "NaN",
    "Infinity",
    "-Infinity",
    "-1",
    "-2",
    "-3",
    "-1000",
    "1.5",
    "-0",
    "0.0",
    "1E+2",
]
STRING_TOKENS = [
    r'"\u0000"',
    r'"git\u0000lab"',
    r'"\ud800"',
    r'"\udfff"',
    r'"x\udc00y"',
    r'"\ud83d\ude00"',
    r'"\ufffd"',
    '"   "',
    '""',
    '"-1"',
    '"12"',
    '"true"',
]
TIME_TOKENS = [
    _ts(NOW - timedelta(days=3)),
    _ts(NOW + CLOCK_SKEW - timedelta(seconds=1)),
    _ts(NOW + CLOCK_SKEW + timedelta(seconds=1)),
    _ts(NOW + timedelta(days=400)),
    '"2015-12-31 23:59:59 UTC"',
    '"2016-01-01 00:00:00 UTC"',
    '"2020-04-17 07:43:54 +0200"',
    '"2020-04-17T07:43:54.162Z"',
    '"9999-12-31T23:59:59-23:59"',
    '"0001-01-01T00:00:00+01:00"',
    '"2024-02-30T00:00:00"',
    '"2024-03-04"',
    '"not a time"',
]
TOKENS = [Raw(t) for t in NUMBER_TOKENS + STRING_TOKENS + TIME_TOKENS] + [
    Raw("null"),
    Raw("true"),
    Raw("false"),
    Raw("[]"),
    Raw("{}"),
    Raw('{"-1": -1}'),
]

#: The keys parse_ping and the companions read, so wrong types land where they matter.
PING_KEYS = [
    "uuid",
    "hostname",
    "recorded_at",
    "version",
    "edition",
    "license_md5",
    "license_sha256",
    "license_subscription_id",
    "license_id",
    "license_plan",
    "license_trial",
    "license_starts_at",
    "license_expires_at",
    "licensee",
    "installation_type",
    "settings",
    "collected_data_categories",
    "Company",
    "counts",
    "error",
    "metadata",
    "metrics",
    "name",
    "time_elapsed",
    "time",
    "message",
    "elapsed",
    *METRIC_NAMES,
    *{path.split(".")[0] for metric in METRICS for path in metric.key_paths},
]

#: Numbers as JSON text: GitLab's sentinels, 64-bit edges, past 64 bits, past double range.
numbers = st.one_of(
    st.sampled_from([Raw(t) for t in NUMBER_TOKENS]),
    st.integers(min_value=-(2**64), max_value=2**64).map(lambda n: Raw(str(n))),
    st.integers(min_value=2**64, max_value=10**500).map(lambda n: Raw(str(n))),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: Raw(json.dumps(x))),
)
#: Past double range (about 1.8e308): exact ints from the fallback parser, no float holds one.
past_double = st.integers(min_value=2**1024, max_value=10**500).map(lambda n: Raw(str(n)))
leaf_values = st.one_of(
    st.sampled_from(TOKENS),
    st.integers().map(lambda n: Raw(str(n))),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: Raw(json.dumps(x))),
    st.text(max_size=20).map(lambda s: Raw(json.dumps(s))),
    st.text(max_size=300).map(lambda s: Raw(json.dumps(s, ensure_ascii=False))),
)
json_keys = st.one_of(
    st.sampled_from(PING_KEYS),
    st.text(max_size=10),
    st.sampled_from([Raw(t) for t in STRING_TOKENS]),
)
json_trees = st.recursive(
    leaf_values,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=6)
    ),
    max_leaves=25,
)
#: Ping-shaped objects: each key the parser reads, present or not, holding anything.
ping_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(PING_KEYS[:17], json_trees)
    | dict.fromkeys(METRIC_NAMES[:6], numbers | json_trees)
    | {
        "uuid": st.one_of(st.just(Raw('"9b2f-uuid"')), json_trees),
        "recorded_at": st.one_of(st.sampled_from([Raw(t) for t in TIME_TOKENS]), json_trees),
    },
)


@st.composite
def deeply_nested(draw) -> str:
    depth = draw(st.integers(min_value=100, max_value=5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = to_json(draw(st.one_of(leaf_values, ping_like)))
    return opener * depth + inner + closer * depth


# --------------------------------------------------------------------------------------------------
# Real payloads, mutated


def _real_texts() -> list[bytes]:
    """Every sample GitLab wrote (several not JSON: the docs elide with `...`) and our builder's."""
    texts = [
        path.read_bytes() for path in sorted(PINGS.iterdir()) if path.suffix in (".json", ".txt")
    ]
    texts.append(orjson.dumps(payload()))
    texts.append(orjson.dumps(payload(full_size=True)))
    return texts


REAL_TEXTS = _real_texts()
REAL_OBJECTS = []
for _text in REAL_TEXTS:
    try:
        _value = orjson.loads(_text)
    except orjson.JSONDecodeError:
        continue
    if isinstance(_value, dict):
        REAL_OBJECTS.append(_value)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict) and node:
        found = [prefix] if prefix else []
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
        return found
    return [prefix]


REAL_PATHS = [[p for p in _paths(obj) if p] for obj in REAL_OBJECTS]
PLACEHOLDER = "@@mutated@@"


@st.composite
def mutated_payloads(draw, base: dict | None = None) -> bytes:
    """A real payload (or `base`) with a few values replaced, keys dropped, bytes changed."""
    if base is None:
        index = draw(st.integers(min_value=0, max_value=len(REAL_OBJECTS) - 1))
        document, paths = REAL_OBJECTS[index], REAL_PATHS[index]
    else:
        document, paths = base, [p for p in _paths(base) if p]
    document = orjson.loads(orjson.dumps(document))  # a copy to mutate
    identity = [p for p in paths if p[0] in PING_KEYS]
    replacements = []
    for number in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(identity or paths) if number == 0 else st.sampled_from(paths))
        node = document
        for part in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.get(part)
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop"]))
        if action == "drop":
            node.pop(path[-1], None)
            continue
        marker = f"{PLACEHOLDER}{number}"
        node[path[-1]] = marker
        replacements.append((json.dumps(marker), to_json(draw(json_trees))))
    text = orjson.dumps(document).decode()
    for marker, value in replacements:
        text = text.replace(marker, value, 1)
    data = text.encode()
    if draw(st.integers(min_value=0, max_value=4)) == 4:  # damage the bytes, one in five
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(max_size=8)) + data[at + draw(st.integers(0, 8)) :]
    return data


@st.composite
def mutated_real_texts(draw) -> bytes:
    """The samples' bytes, valid JSON or not, cut, spliced and sprinkled with hostile tokens."""
    data = draw(st.sampled_from(REAL_TEXTS))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        insert = draw(st.one_of(st.binary(max_size=6), st.sampled_from(TOKENS).map(str.encode)))
        data = data[:at] + insert + data[at + draw(st.integers(0, 10)) :]
    return data


json_bodies = st.one_of(
    json_trees.map(to_json).map(str.encode),
    ping_like.map(to_json).map(str.encode),
    deeply_nested().map(str.encode),
    mutated_payloads(),
    mutated_real_texts(),
)
#: What an HTTP body or an uploaded file may hold: JSON-ish text, bytes, gzip of either, a BOM.
any_bodies = st.one_of(
    json_bodies,
    st.binary(max_size=300),
    st.tuples(st.just(b"\xef\xbb\xbf"), json_bodies).map(b"".join),
    json_bodies.map(gzip.compress),
    st.binary(max_size=200).map(gzip.compress),
    json_bodies.map(lambda b: gzip.compress(b)[: max(2, len(b) // 3)]),  # truncated gzip
    st.tuples(json_bodies.map(gzip.compress), st.binary(min_size=1, max_size=20)).map(b"".join),
)


# --------------------------------------------------------------------------------------------------
# What "storable" means


def assert_storable_text(value: object, limit: int | None = None) -> None:
    assert isinstance(value, str), value
    value.encode("utf-8")  # a lone surrogate raises here
    assert "\x00" not in value
    if limit is not None:
        assert len(value) <= limit, (len(value), limit)


def assert_count(value: object) -> None:
    """A metric or seat value: unknown, or a finite number a 64-bit column holds."""
    if value is None:
        return
    assert type(value) in (int, float), value
    assert value == value and abs(value) != float("inf"), value
    assert 0 <= value <= INT64_MAX, value


def assert_tree_storable(root: object) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            assert_storable_text(node)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def assert_reason(exc: Exception) -> None:
    reason = getattr(exc, "reason", None) or str(exc)
    assert isinstance(reason, str) and reason.strip(), repr(exc)


def assert_parsed_ping_storable(parsed, *, now: datetime) -> None:
    for key in (
        "uuid",
        "hostname",
        "version",
        "edition",
        "license_md5",
        "license_sha256",
        "license_subscription_id",
        "license_id",
        "license_plan",
        "licensee_company",
        "installation_type",
    ):
        value = getattr(parsed, key)
        if value is not None:
            limit = MAX_LENGTHS["licensee_company" if key == "licensee_company" else key]
            assert_storable_text(value, limit)
    assert parsed.uuid, "an accepted ping has a uuid"
    for name in (*parsed.collected_data_categories, *parsed.not_numeric, *parsed.failed):
        assert_storable_text(name)
    assert set(parsed.metrics) == set(METRIC_NAMES)
    for value in parsed.metrics.values():
        assert_count(value)
    assert parsed.recorded_at.tzinfo is not None
    assert EARLIEST_RECORDED_AT <= parsed.recorded_at <= now + CLOCK_SKEW, parsed.recorded_at
    for day in (parsed.license_starts_at, parsed.license_expires_at):
        assert day is None or isinstance(day, date)
    assert parsed.license_trial in (None, True, False)


REFUSED = object()


def decode_or_refusal(raw: bytes, *, content_encoding: str | None = None) -> object:
    """The decoded body, or REFUSED after checking the refusal is a named PayloadError."""
    try:
        value = decode_body(raw, content_encoding=content_encoding, max_bytes=LIMIT)
    except PayloadError as exc:
        assert exc.status in (400, 413, 415), exc.status
        assert_reason(exc)
        return REFUSED
    assert_tree_storable(value)
    return value


# --------------------------------------------------------------------------------------------------
# Transport


@PURE
@given(
    raw=any_bodies,
    encoding=st.sampled_from([None, "", "gzip", "x-gzip", " GZIP ", "identity", "br", "deflate"]),
)
def test_transport_decodes_or_refuses_every_body_by_name(raw, encoding):
    value = decode_or_refusal(raw, content_encoding=encoding)
    if value is not REFUSED:
        # The text kept as the raw payload decodes to the same value.
        text = inflate_body(raw, content_encoding=encoding, max_bytes=LIMIT)
        assert loads_json(text) == value


@settings(PURE, max_examples=60)
@given(raw=json_bodies.map(gzip.compress), limit=st.integers(min_value=0, max_value=4000))
def test_gzip_output_over_the_limit_is_a_413_never_more_memory(raw, limit):
    try:
        text = inflate_body(raw, content_encoding="gzip", max_bytes=limit)
    except PayloadError as exc:
        assert exc.status in (400, 413)
        assert_reason(exc)
    else:
        assert len(text) <= limit


# --------------------------------------------------------------------------------------------------
# parse_ping


def _parse_body(raw: bytes):
    value = decode_or_refusal(raw)
    if value is REFUSED:
        return None
    try:
        parsed = parse_ping(value, now=NOW)
    except PingRejected as exc:
        assert_reason(exc)
        return None
    assert_parsed_ping_storable(parsed, now=NOW)
    return parsed


@PURE
@given(raw=json_bodies)
def test_parse_ping_accepts_a_storable_ping_or_refuses_by_name(raw):
    _parse_body(raw)


@settings(PURE, max_examples=150)
@given(raw=mutated_payloads(base=payload(recorded_at=NOW - timedelta(days=1))))
def test_a_real_ping_mutated_is_still_stored_whole_or_refused_by_name(raw):
    _parse_body(raw)


python_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)  # loads_json caps ints at 4300 digits
    | st.floats()
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(PING_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@PURE
@given(value=python_json, now=st.datetimes(min_value=datetime(2016, 1, 1), timezones=st.just(UTC)))
def test_parse_ping_of_any_decoded_value_refuses_only_with_ping_rejected(value, now):
    try:
        parsed = parse_ping(value, now=now)
    except PingRejected as exc:
        assert_reason(exc)
        return
    for metric in parsed.metrics.values():
        assert_count(metric)
    assert parsed.recorded_at <= now + CLOCK_SKEW


@PURE
@given(
    fields=st.fixed_dictionaries(
        {"uuid": st.text(min_size=1, max_size=70), "recorded_at": st.sampled_from(TIME_TOKENS)},
        optional={"hostname": st.text(max_size=300), "version": st.text(max_size=80)},
    )
)
def test_a_ping_never_leaves_with_a_clock_ahead_of_now_or_an_identity_too_long(fields):
    document = {k: v if isinstance(v, Raw) else Raw(json.dumps(v)) for k, v in fields.items()}
    _parse_body(to_json(document).encode())


# --------------------------------------------------------------------------------------------------
# The companion reports


def _report_bodies(wrapper: str):
    inner = st.fixed_dictionaries(
        {},
        optional={
            "uuid": json_trees,
            "hostname": json_trees,
            "version": json_trees,
            "time": st.one_of(st.sampled_from([Raw(t) for t in TIME_TOKENS]), json_trees),
            "message": json_trees,
            "elapsed": past_double | numbers | json_trees,
            "metrics": st.one_of(
                json_trees,
                st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "name": st.text(min_size=1, max_size=20) | json_trees,
                            "time_elapsed": past_double | numbers,
                        },
                    ),
                    max_size=5,
                ),
            ),
        },
    )
    return st.one_of(
        st.fixed_dictionaries({wrapper: inner}).map(to_json).map(str.encode),
        st.fixed_dictionaries({wrapper: json_trees}).map(to_json).map(str.encode),
        json_bodies,
    )


@PURE
@given(raw=_report_bodies("error"))
def test_an_error_report_is_read_storable_or_refused_by_name(raw):
    value = decode_or_refusal(raw)
    if value is REFUSED:
        return
    try:
        report = parse_ping_error(value)
    except PingRejected as exc:
        assert_reason(exc)
        return
    for text, limit in ((report.uuid, 64), (report.version, 64)):
        if text is not None:
            assert_storable_text(text, limit)
    assert_storable_text(report.hostname, 255)
    assert_storable_text(report.message, MAX_LENGTHS["message"])
    assert report.elapsed is None or (0 <= report.elapsed < float("inf"))
    assert report.time is None or report.time.tzinfo is not None


@PURE
@given(raw=_report_bodies("metadata"))
def test_a_metadata_report_is_read_storable_or_refused_by_name(raw):
    value = decode_or_refusal(raw)
    if value is REFUSED:
        return
    try:
        report = parse_ping_metadata(value)
    except PingRejected as exc:
        assert_reason(exc)
        return
    if report.uuid is not None:
        assert_storable_text(report.uuid, 64)
    assert report.skipped >= 0
    for timing in report.metrics:
        assert_storable_text(timing.name, MAX_LENGTHS["metric_name"])
        assert timing.time_elapsed is None or 0 <= timing.time_elapsed < float("inf")


# --------------------------------------------------------------------------------------------------
# CSV: SaaS exports and CRM files

#: Cells that break naive readers: huge and odd numbers, odd dates, NUL, quotes, line breaks.
HOSTILE_CELLS = [
    "",
    " ",
    "-",
    "0",
    "-1",
    "7",
    " 42 ",
    "1" + "0" * 400,
    "9" * 5000,
    str(2**63),
    str(INT64_MAX),
    "1e400",
    "1.0",
    "1.5",
    "NaN",
    "inf",
    "²",
    "٣",
    "1_000",
    "--5",
    "2024-05-01",
    "2015-12-31",
    "2999-01-01",
    "2024-02-30",
    "20240501",
    "2024-05",
    "2024-13",
    "2024-05-01T00:00:00",
    "0000-01-01",
    "a\x00b",
    "\x00",
    'quote"inside',
    "comma,inside",
    "line\nbreak",
    "\ufeff",
    "\ufffd",
    "x" * 300,
    "Strategic",
    "ultimate",
    "self-managed",
    "active",
    "green",
    "0123456789abcdef0123456789abcdef",
]
#: Past the csv module's field size limit (131072): its reader raises on it.
HUGE_CELL = "y" * 131_073

# No bare CR here: the csv module refuses one outside quotes, a case of its own (`bare_cr`).
_chars = st.characters(codec="utf-8", exclude_characters="\r")
_text = st.text(_chars, max_size=20)
cells = st.one_of(st.sampled_from(HOSTILE_CELLS), _text)
KNOWN_COLUMNS = sorted(
    {c for cols in KINDS.values() for c in cols}
    | set(REQUIRED_COLUMNS)
    | {"seats", "seats_in_use", "arr", "note", "prioritization", *METRIC_NAMES}
)
column_names = st.one_of(
    st.sampled_from(KNOWN_COLUMNS),
    st.sampled_from(KNOWN_COLUMNS).map(lambda c: f" {c.upper()} "),
    st.text(_chars, max_size=12),
)


#: Ids the importer properties create first, so generated rows can name accounts that exist.
KNOWN_CRM_IDS = ("001KNOWN0001", "001KNOWN0002")
KNOWN_SUBSCRIPTIONS = ("A-S00000001", "A-S00000002")
_day = st.dates(min_value=date(2016, 1, 1), max_value=date(2024, 5, 31)).map(date.isoformat)
_digits = st.integers(min_value=0, max_value=10**6).map(str)
#: Cells a column accepts, so a row gets far enough for its other cells to be read.
VALID_CELLS = {
    "crm_account_id": st.sampled_from(KNOWN_CRM_IDS)
    | st.from_regex(r"001[A-Za-z0-9]{3,12}", fullmatch=True),
    "name": st.text(_chars, min_size=1, max_size=30),
    "segment": st.sampled_from(["Strategic", "growth", " Scale ", "Digital"]),
    "csm": st.just(""),
    "customer_since": _day,
    "prioritization": st.integers(min_value=1, max_value=9).map(str),
    "subscription_name": st.sampled_from(KNOWN_SUBSCRIPTIONS)
    | st.from_regex(r"A-S[0-9]{4,8}", fullmatch=True),
    "plan": st.sampled_from(["ultimate", "Premium", "gold", "free"]),
    "licensed_seats": _digits,
    "start_date": _day,
    "end_date": _day,
    "status": st.sampled_from(["active", "Cancelled", "", "-"]),
    "deployment": st.sampled_from(["self-managed", "saas", "sm", "gitlab.com"]),
    "arr": st.decimals(min_value=0, max_value=10**9, places=2).map(str),
    "license_md5": st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    "zuora_subscription_id": st.sampled_from(KNOWN_SUBSCRIPTIONS)
    | st.from_regex(r"A-S[0-9]{4,8}", fullmatch=True),
    "roi": st.sampled_from(["Green", "red", "YELLOW"]),
    "note": st.text(_chars, max_size=40),
    "month": st.dates(min_value=date(2016, 1, 1), max_value=date(2024, 5, 31)).map(
        lambda d: f"{d:%Y-%m}"
    ),
    "tickets": _digits,
    "date": _day,
    "personas": st.lists(st.sampled_from(["Executive", "Champion", "x" * 40]), max_size=8).map(
        ";".join
    ),
    "namespace_id": st.integers(min_value=1, max_value=10**9).map(str),
    "namespace_path": st.text(_chars, min_size=1, max_size=30),
    "snapshot_date": _day,
    "seats": _digits,
    "seats_in_use": _digits,
}


#: Text that looks like a whole number to str.isdigit() or int() but is none a column can hold.
ODD_NUMBERS = st.sampled_from(
    [
        "²",
        "٣",
        "１２",
        "9" * 5000,
        "0" * 4301,
        "1_000",
        " 1 ",
        "+1",
        "-0",
        "1e3",
        "0x10",
        str(2**31),
    ]
)
NUMERIC_COLUMNS = {"prioritization", "licensed_seats", "tickets", "namespace_id", "seats", "arr"}


def _cells_for(column: str):
    column = column.strip().lower()
    valid = VALID_CELLS.get(column)
    if valid is None:
        return cells
    # Mostly valid: a row is refused at its first bad cell, so one bad cell per row reaches
    # the checks behind it.
    odd = ODD_NUMBERS | cells if column in NUMERIC_COLUMNS or column in METRIC_NAMES else cells
    return st.integers(min_value=0, max_value=5).flatmap(lambda n: valid if n else odd)


@st.composite
def csv_files(
    draw,
    kinds: tuple[str, ...] | None = None,
    huge_cells: bool = False,
    bare_cr: bool = False,
) -> bytes:
    """A CSV file: a header (a known kind's columns or anything), rows of hostile cells."""
    if kinds is None:
        header = draw(st.lists(column_names, max_size=10))
    else:
        # A kind's name, "saas", or the columns themselves.
        headers = [k if isinstance(k, tuple) else KINDS.get(k, REQUIRED_COLUMNS) for k in kinds]
        required = list(draw(st.sampled_from(headers)))
        extra = draw(st.lists(column_names, max_size=3))
        header = draw(st.permutations(required + extra))
    row = st.tuples(*(_cells_for(c) for c in header)).map(list)
    # Rows one cell short or long, as hand-edited exports have.
    ragged = st.one_of(
        row, row.map(lambda r: r[:-1]), st.tuples(row, cells).map(lambda t: [*t[0], t[1]])
    )
    rows = [header, *draw(st.lists(ragged, max_size=8))]
    for special in [HUGE_CELL] * huge_cells + ["cr\rinside"] * bare_cr:
        target = rows[draw(st.integers(min_value=0, max_value=len(rows) - 1))]
        if target:
            target[draw(st.integers(min_value=0, max_value=len(target) - 1))] = special
        else:
            target.append(special)
    # Bare CR line ends: Excel for Mac's "CSV (Macintosh)"; a CR inside a cell written unquoted
    # (csv quotes it only when it is part of the line end): a hand-edited export.
    line_ends = ["\r", "\n"] if bare_cr else ["\n", "\r\n"]
    writer = csv.writer(out := io.StringIO(), lineterminator=draw(st.sampled_from(line_ends)))
    writer.writerows(rows)
    data = out.getvalue().encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(min_value=0, max_value=5)) == 5:  # invalid UTF-8, one file in six
        at = draw(st.integers(min_value=0, max_value=len(data)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80", b"\xf0\x9f"]))
        data = data[:at] + bad + data[at:]
    return Blob(data)


@st.composite
def saas_json_files(draw) -> bytes:
    row = st.fixed_dictionaries(
        {},
        optional={
            "namespace_id": st.one_of(
                st.integers(min_value=1, max_value=10**6).map(lambda n: Raw(str(n))), json_trees
            ),
            "namespace_path": json_trees,
            "subscription_name": json_trees,
            "snapshot_date": st.one_of(
                st.sampled_from([Raw(json.dumps(c)) for c in HOSTILE_CELLS[20:29]]), json_trees
            ),
            "seats": json_trees,
            "seats_in_use": json_trees,
            **dict.fromkeys(METRIC_NAMES[:4], json_trees),
        },
    )
    items = draw(st.lists(st.one_of(row, json_trees), max_size=6))
    if draw(st.booleans()):
        return to_json(items).encode()
    return "\n".join(to_json(item) for item in items).encode()


saas_files = st.one_of(
    csv_files(kinds=("saas",)), csv_files(), saas_json_files(), st.binary(max_size=200)
)
SAAS_NAMES = st.sampled_from(["export.csv", "export.json", "export.jsonl", "export"])
LOCATION_RE = re.compile(r"(line|item) \d+")
#: A cell past the csv module's field limit: few examples, each is 128 KiB, and no shrinking
#: (it would spend minutes making a 128 KiB cell slightly shorter).
HUGE = settings(PURE, max_examples=20, phases=[Phase.explicit, Phase.generate])


def check_saas_file(data: bytes, name: str) -> None:
    try:
        rows = list(read_rows(data, filename=name))
    except PingRejected as exc:
        assert_reason(exc)
        return
    for number, (location, row) in enumerate(rows, start=1):
        assert LOCATION_RE.fullmatch(location), location
        try:
            parsed = parse_saas_row(row, line=number, now=NOW)
        except PingRejected as exc:
            assert_reason(exc)
            continue
        assert 0 < parsed.namespace_id <= INT64_MAX
        assert_storable_text(parsed.namespace_path, 255)
        assert_storable_text(parsed.subscription_name, 64)
        assert EARLIEST_RECORDED_AT <= parsed.recorded_at <= NOW + CLOCK_SKEW
        for value in parsed.metrics.values():
            assert value is None or type(value) is int
            assert_count(value)


@PURE
@given(data=saas_files, name=SAAS_NAMES)
def test_saas_rows_are_read_storable_or_refused_by_name(data, name):
    check_saas_file(data, name)


@HUGE
@given(data=csv_files(kinds=("saas",), huge_cells=True))
def test_a_saas_csv_cell_past_the_field_limit_is_refused_by_name(data):
    check_saas_file(data, "export.csv")


@settings(PURE, max_examples=60)
@given(data=csv_files(kinds=("saas",), bare_cr=True))
def test_a_saas_csv_with_a_bare_cr_is_read_or_refused_by_name(data):
    check_saas_file(data, "export.csv")


ERROR_RE = re.compile(r"line \d+: \S.*", re.DOTALL)


def check_crm_file(data: bytes) -> None:
    try:
        kind, rows, errors = read_csv(data)
    except ImportError_ as exc:
        assert type(exc) is ImportError_
        assert_reason(exc)
        return
    assert kind in KINDS
    for error in errors:
        assert ERROR_RE.fullmatch(error), error
    keys = [(type(row), str(vars(row).get("crm_account_id")), row.line) for row in rows]
    assert len(set(keys)) == len(keys)
    for row in rows:
        assert row.line >= 2
        for key, value in vars(row).items():
            if isinstance(value, str):
                assert_storable_text(value, 2000 if key == "note" else 255)
            if isinstance(value, int) and not isinstance(value, bool) and key != "line":
                assert 0 <= value <= 2_147_483_647, (key, value)


@PURE
@given(data=st.one_of(csv_files(kinds=tuple(KINDS)), csv_files(), st.binary(max_size=200)))
def test_crm_csv_is_read_storable_or_refused_by_name(data):
    check_crm_file(data)


@PURE
@given(
    data=csv_files(
        kinds=("support_tickets", "subscriptions", (*KINDS["companies"], "prioritization"))
    )
)
def test_crm_number_columns_refuse_every_odd_number_by_name(data):
    check_crm_file(data)


@HUGE
@given(data=csv_files(kinds=tuple(KINDS), huge_cells=True))
def test_a_crm_csv_cell_past_the_field_limit_is_refused_by_name(data):
    check_crm_file(data)


@settings(PURE, max_examples=60)
@given(data=csv_files(kinds=tuple(KINDS), bare_cr=True))
def test_a_crm_csv_with_a_bare_cr_is_read_or_refused_by_name(data):
    check_crm_file(data)
