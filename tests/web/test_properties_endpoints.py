"""Property-based tests of every HTTP endpoint: never a 500, every refusal a named JSON 4xx.

The sender endpoints get arbitrary bodies (bytes, gzip of bytes, mutated real payloads) under
odd Content-Type / Content-Encoding / Authorization headers; an accepted ping leaves exactly one
row for its (uuid, hostname, recorded_at), a refusal stores no ping (at most the rejected
payload). The upload page gets arbitrary files and answers one result row per file; the report
pages and the health API get arbitrary query strings and account ids.

Each example runs in its own transaction, rolled back after it (hypothesis' Django
``TestCase``), so examples never see each other's rows.
"""

from __future__ import annotations

import gzip
import re
import string
from datetime import timedelta
from urllib.parse import quote, quote_from_bytes, urlencode

import orjson
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from instances.models import Instance, License, MonthlyUsage, PingReport, RejectedPayload, UsagePing
from instances.parsing import parse_ping
from instances.transport import inflate_body, loads_json
from tests.conftest import make_user
from tests.factories import CompanyFactory, InstanceFactory, store_ping
from tests.ingest_support import payload, store
from tests.instances.test_properties_parsing import (
    TIME_TOKENS,
    Blob,
    Raw,
    any_bodies,
    json_trees,
    mutated_payloads,
    numbers,
    past_double,
    to_json,
)

DB = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODELS = (UsagePing, Instance, License, MonthlyUsage, PingReport, RejectedPayload)

#: A ping recorded an hour ago, so the clock check lets it (and its mutations) through.
AN_HOUR_AGO = timezone.now() - timedelta(hours=1)
BASE = payload(recorded_at=AN_HOUR_AGO)
STORED = payload(uuid="11111111-2222-3333-4444-555555555555", recorded_at=AN_HOUR_AGO)


def mostly(main, other):
    """`main` three times in four, else `other`.

    one_of alone would not do: it flattens nested one_ofs, so a strategy of many branches
    (any_bodies) would crowd out the bodies that reach the parser.
    """
    return st.integers(min_value=0, max_value=3).flatmap(lambda n: main if n else other)


content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/json",
            "application/x-json",
            "application/json;charset=latin-1",
            "text/plain",
            "application/gzip",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    st.text(string.printable.strip(), max_size=30),
)
content_encodings = st.one_of(
    st.sampled_from([None, "", "gzip", "x-gzip", "GZIP", " gzip ", "identity", "br", "deflate"]),
    st.text(string.ascii_letters + string.digits + "-,; ", max_size=20),
)
authorizations = st.sampled_from([None, "Bearer", "Bearer nope", "Basic dTpw", "x"])


@st.composite
def headers(draw, body: bytes) -> tuple[str, str | None, str | None]:
    """(Content-Type, Content-Encoding, Authorization): what GitLab sends, or anything."""
    if draw(st.integers(min_value=0, max_value=2)):  # two in three: GitLab's own headers
        return "application/json", "gzip" if body[:2] == b"\x1f\x8b" else None, None
    return draw(content_types), draw(content_encodings), draw(authorizations)


#: Good pings from instances never seen (odd values are the mutations' business).
fresh_pings = st.builds(
    lambda uuid, host, minutes, metrics: orjson.dumps(
        payload(
            uuid=str(uuid),
            hostname=host,
            recorded_at=AN_HOUR_AGO - timedelta(minutes=minutes),
            metrics=metrics,
        )
    ),
    st.uuids(),
    st.text(string.ascii_lowercase + ".-é", max_size=40),
    st.integers(min_value=0, max_value=60 * 24 * 365 * 5),
    st.dictionaries(
        st.sampled_from(["billable_users", "umau", "ci_builds_l28", "deployments_l28"]),
        # build_payload derives all-time builds as 13 × ci_builds_l28, and orjson writes
        # nothing past 64 bits (unsigned): 2**60 keeps it in range. Numbers past 64 bits are
        # sent as raw text by the hostile-number tests instead.
        st.none() | st.integers(min_value=0, max_value=2**60),
        max_size=3,
    ),
)
#: Real payloads mutated, sometimes gzipped, fresh ones, the one already stored sent again.
ping_bodies = mostly(
    st.one_of(
        mutated_payloads(base=BASE),
        mutated_payloads(base=BASE).map(gzip.compress),
        fresh_pings,
        fresh_pings.map(gzip.compress),
        st.just(orjson.dumps(STORED)),
    ),
    any_bodies,
)


def _report(wrapper: str):
    shaped = st.one_of(
        st.fixed_dictionaries({wrapper: json_trees}).map(to_json).map(str.encode),
        st.fixed_dictionaries(
            {
                wrapper: st.fixed_dictionaries(
                    {},
                    optional={
                        "uuid": mostly(st.uuids().map(str).map(Raw.quoted), json_trees),
                        "hostname": mostly(st.text(max_size=20).map(Raw.quoted), json_trees),
                        "message": mostly(st.text(max_size=200).map(Raw.quoted), json_trees),
                        "elapsed": st.booleans().flatmap(
                            lambda b: past_double if b else numbers | json_trees
                        ),
                        "time": st.sampled_from(TIME_TOKENS).map(Raw),
                        "metrics": st.lists(
                            mostly(
                                st.fixed_dictionaries(
                                    {"name": st.text(min_size=1, max_size=20).map(Raw.quoted)},
                                    optional={"time_elapsed": mostly(numbers, past_double)},
                                ),
                                json_trees,
                            ),
                            max_size=4,
                        ),
                    },
                )
            }
        )
        .map(to_json)
        .map(str.encode),
    )
    return mostly(shaped, any_bodies)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


def assert_named_refusal(response) -> None:
    assert 400 <= response.status_code < 500, response.status_code
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = orjson.loads(response.content).get("error")
    assert isinstance(error, str) and error.strip(), response.content


@override_settings(ALLOW_ANONYMOUS_PINGS=True)
class SenderEndpointProperties(TestCase):
    @classmethod
    def setUpTestData(cls):
        store(STORED)

    def post(self, path, body, content_type, encoding, authorization):
        headers = {}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        if authorization is not None:
            headers["Authorization"] = authorization
        return self.client.post(path, data=body, content_type=content_type, headers=headers)

    @settings(DB, max_examples=150)
    @given(data=st.data(), body=ping_bodies)
    def test_usage_data_stores_one_whole_ping_or_refuses_by_name(self, data, body):
        content_type, encoding, authorization = data.draw(headers(body))
        before = counts()
        response = self.post("/usage_data", body, content_type, encoding, authorization)
        after = counts()
        event(f"status {response.status_code}")  # the statistics show the accepted path ran
        assert response.status_code < 500
        if response.status_code >= 400:
            assert_named_refusal(response)
            delta = changed(before, after)
            # A refusal stores no ping; a 422 (JSON, but not a ping) keeps the body for ops.
            allowed = {"RejectedPayload": 1} if response.status_code == 422 else {}
            assert delta == allowed, (response.status_code, delta)
            return
        assert response.status_code in (200, 201), response.status_code
        ping = UsagePing.objects.select_related("instance").get(
            pk=response.json()["conv_index"]["usage_data_id"]
        )
        # The body decodes to the same identity as the stored row, and only one row has it.
        parsed = parse_ping(
            loads_json(inflate_body(body, content_encoding=encoding, max_bytes=10**8))
        )
        assert (ping.instance.uuid, ping.instance.hostname, ping.recorded_at) == (
            parsed.uuid,
            parsed.hostname,
            parsed.recorded_at,
        )
        assert (
            UsagePing.objects.filter(
                instance__uuid=parsed.uuid,
                instance__hostname=parsed.hostname,
                recorded_at=parsed.recorded_at,
            ).count()
            == 1
        )
        delta = changed(before, after)
        assert delta.get("UsagePing", 0) == (1 if response.status_code == 201 else 0), delta
        assert "RejectedPayload" not in delta and "PingReport" not in delta, delta
        assert delta.get("Instance", 0) in (0, 1), delta

    @settings(DB, max_examples=150)
    @given(data=st.data(), body=_report("error"))
    def test_usage_ping_errors_keeps_one_report_or_refuses_by_name(self, data, body):
        self._check_report("/usage_ping_errors", body, *data.draw(headers(body)))

    @settings(DB, max_examples=150)
    @given(data=st.data(), body=_report("metadata"))
    def test_usage_ping_metadata_keeps_one_report_or_refuses_by_name(self, data, body):
        self._check_report("/usage_ping_metadata", body, *data.draw(headers(body)))

    def _check_report(self, path, body, content_type, encoding, authorization):
        before = counts()
        response = self.post(path, body, content_type, encoding, authorization)
        delta = changed(before, counts())
        event(f"status {response.status_code}")
        assert response.status_code < 500
        if response.status_code >= 400:
            assert_named_refusal(response)
            assert delta == {}, delta
        else:
            assert response.status_code == 201
            assert delta == {"PingReport": 1}, delta
            assert PingReport.objects.filter(pk=response.json()["id"]).exists()


upload_names = st.text(string.ascii_letters + string.digits + "-_. é", min_size=1, max_size=30)
uploads = st.lists(
    st.tuples(
        st.one_of(upload_names, upload_names.map(lambda n: n + ".json")),
        st.one_of(
            ping_bodies,
            st.just(b""),
            mutated_payloads(base=BASE).map(lambda b: b"\xef\xbb\xbf" + b),
        ),
    ),
    min_size=1,
    max_size=3,
)
RESULT_ROW = re.compile(rb'data-testid="upload-result" data-ok="(true|false)"')


class UploadPageProperties(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.ops = make_user("ops_user", "Ops", staff=True)
        store(STORED)

    @settings(DB, max_examples=60)
    @given(files=uploads)
    def test_every_uploaded_file_gets_one_result_row_and_nothing_half_stored(self, files):
        self.client.force_login(self.ops)
        before = counts()
        response = self.client.post(
            "/usage_data/new",
            {"files": [SimpleUploadedFile(name, Blob(data)) for name, data in files]},
        )
        delta = changed(before, counts())
        assert response.status_code == 200, response.status_code
        rows = RESULT_ROW.findall(response.content)
        event(f"stored {rows.count(b'true')} of {len(files)}")
        assert len(rows) == len(files), (len(rows), len(files))
        # Each refused file is kept once for ops; each stored one is a whole ping.
        assert delta.get("RejectedPayload", 0) == rows.count(b"false"), delta
        assert delta.get("UsagePing", 0) <= rows.count(b"true"), delta
        assert "PingReport" not in delta


#: The parameters the pages read (filters, sorting, paging, exports), plus anything.
PARAMS = [
    "q",
    "csm",
    "segment",
    "has_unknown",
    "no_usage_data",
    "lu_color",
    "overall_color",
    "product_usage_color",
    "older_than",
    "instance_type",
    "sort",
    "page",
    "per_page",
    "_export",
    "measure",
    "status",
    "age",
    "account",
    "who",
    "instance",
    "report",
    "download",
    "next",
]
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1" * 30,
            "1e400",
            "NaN",
            "csv",
            "xlsx",
            "pdf",
            "-name",
            "name",
            "health",
            "__class__",
            "Red",
            "Unknown",
            "mine",
            "all",
            "on",
            "true",
            "\x00",
            "'; DROP TABLE x;--",
            "%",
            "//evil.example",
        ]
    ),
    st.text(max_size=20),
)
query_strings = st.one_of(
    st.lists(st.tuples(st.sampled_from(PARAMS) | st.text(max_size=8), VALUES), max_size=6).map(
        lambda pairs: urlencode(pairs, encoding="utf-8", errors="surrogatepass")
    ),
    st.binary(max_size=40).map(lambda b: quote_from_bytes(b, safe="=&%+")),
)
PAGES = ["/", "/reports/versions/", "/burndown/", "/data-quality/", "/alerts/"]


class ReadPageProperties(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.ops = make_user("ops_user", "Ops", staff=True)
        cls.csm = make_user("csm_user", "CSM")
        company = CompanyFactory(csm=cls.csm, crm_account_id="0019000000ACME01")
        instance = InstanceFactory(subscription__company=company, company=company)
        store_ping(instance, days_ago=3)
        InstanceFactory(subscription__company=CompanyFactory(), instance_type="unknown")
        cls.users = {"ops": cls.ops, "csm": cls.csm}

    @settings(DB, max_examples=150)
    @given(page=st.sampled_from(PAGES), query=query_strings, who=st.sampled_from(["ops", "csm"]))
    def test_report_pages_never_fail_on_any_query_string(self, page, query, who):
        self.client.force_login(self.users[who])
        response = self.client.get(f"{page}?{query}")
        assert response.status_code < 500, (page, query, response.status_code)

    @settings(DB, max_examples=100)
    @given(
        account=st.one_of(
            st.text(min_size=1, max_size=40),
            st.sampled_from(["0019000000ACME01", "0019000000acme01", " 0019000000ACME01", "."]),
        ),
        query=query_strings,
    )
    def test_health_api_never_fails_on_any_account_id(self, account, query):
        self.client.force_login(self.ops)
        path = quote(account.encode("utf-8", "surrogatepass"), safe="")
        response = self.client.get(f"/api/v1/accounts/{path}/health?{query}")
        assert response.status_code < 500, (account, response.status_code)
        if response.status_code == 200:
            assert response["Content-Type"].startswith("application/json")
