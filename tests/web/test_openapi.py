"""The OpenAPI 3.1 document at /api/v1/openapi.json is valid, complete and true: every endpoint's
real answers — each status it documents — validate against the schemas it declares (JSON Schema
draft 2020-12, ``$ref``s resolved into the document), and the payload cannot gain or change a
field without the document saying so.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import URLPattern, get_resolver
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from instances.services.tokens import ingest_token_create
from scoring.exports import health_payload
from scoring.services import companies_refresh
from tests.factories import CompanyFactory, InstanceFactory, SubscriptionFactory, store_ping
from tests.web.test_throttle import fresh_address
from usage_portal.web.api.pagination import PARAMETERS

pytestmark = pytest.mark.django_db

DOCUMENT_URI = "urn:usage-portal:openapi"
LIST = "/api/v1/accounts/health"
ONE = "/api/v1/accounts/{crm_account_id}/health"
CSV = "/exports/health.csv"


@pytest.fixture
def document() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")  # no sign-in: integrators read it first
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def _pointer(*parts: str) -> str:
    """A JSON pointer to ``parts`` (RFC 6901: ``~`` and ``/`` escaped)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The document's promise for one answer, checked against the answer itself."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(DOCUMENT_URI, resource)

    def _response(self, path: str, status: int) -> tuple[dict, str]:
        """The response the document declares for ``GET path`` → ``status``, and its pointer."""
        responses = self.document["paths"][path]["get"]["responses"]
        assert str(status) in responses, f"GET {path} answers {status}, undocumented"
        declared = responses[str(status)]
        pointer = _pointer("paths", path, "get", "responses", str(status))
        if "$ref" in declared:  # a shared one, under components/responses
            pointer = declared["$ref"].removeprefix("#")
            declared = self.document
            for part in pointer.strip("/").split("/"):
                declared = declared[part]
        return declared, pointer

    def check(self, path: str, response) -> None:
        declared, pointer = self._response(path, response.status_code)
        for header, spec in declared.get("headers", {}).items():
            if spec.get("required"):
                assert response.has_header(header), f"{path} {response.status_code}: no {header}"
        content = declared.get("content", {})
        if not content:
            return
        media = response["Content-Type"].split(";")[0]
        assert media in content, f"{path} {response.status_code}: {media} undocumented"
        ref = f"{DOCUMENT_URI}#{pointer}{_pointer('content', media, 'schema')}"
        body = response.json() if media == "application/json" else response.content.decode()
        self.validate(ref, body)

    def validate(self, ref: str, instance) -> None:
        validator = Draft202012Validator(
            {"$ref": ref},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(instance)

    def schema(self, name: str) -> str:
        return f"{DOCUMENT_URI}#/components/schemas/{name}"


@pytest.fixture
def contract(document) -> Contract:
    return Contract(document)


@pytest.fixture
def book():
    """Accounts with usage, one scored without any (its measures NA, its figures null), one
    never scored."""
    scored = []
    for seats, users in ((200, 80), (100, 95), (50, 50)):
        sub = SubscriptionFactory(licensed_seats=seats)
        inst = InstanceFactory(subscription=sub, company=sub.company)
        store_ping(inst, days_ago=1, metrics={"billable_users": users}, refresh=False)
        scored.append(sub.company)
    no_data = CompanyFactory(name="No Data Inc")
    companies_refresh(company_ids=[c.pk for c in (*scored, no_data)], history=False)
    return {"scored": scored, "no_data": no_data, "never_scored": CompanyFactory()}


@pytest.fixture
def tokens() -> dict[str, dict[str, str]]:
    def header(scopes):
        return {"Authorization": f"Bearer {ingest_token_create(name='t', scopes=scopes)[1]}"}

    return {
        "read": header(["read"]),
        "ingest": header(["ingest"]),
        "unknown": {"Authorization": "Bearer upt_not-a-token"},
        "none": {},
    }


# --------------------------------------------------------------------------------------------------
# The document


def test_it_is_a_valid_openapi_3_1_document(document):
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)  # raises on any fault, $refs included


def test_it_describes_every_route_of_the_api_and_no_other():
    routes = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLPattern) and entry.name and entry.name.startswith("api_"):
            routes.add("/" + str(entry.pattern).replace("<str:", "{").replace(">", "}"))
    routes -= {"/api/v1/openapi.json"}
    documented = set(Contract(Client().get("/api/v1/openapi.json").json()).document["paths"])
    assert documented == routes | {CSV}


def test_it_documents_exactly_the_parameters_the_list_takes(document):
    documented = [p["name"] for p in document["paths"][LIST]["get"]["parameters"]]
    assert sorted(documented) == sorted(PARAMETERS)


def test_every_operation_declares_the_bearer_scheme(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    for path in (LIST, ONE, CSV):
        assert {"bearerToken": []} in document["paths"][path]["get"]["security"]


# --------------------------------------------------------------------------------------------------
# Real answers, every status


def test_the_list_answers_as_documented(client, contract, book, tokens):
    first = client.get(f"{LIST}?limit=2", headers=tokens["read"])
    assert first.status_code == 200 and first.json()["next"]
    contract.check(LIST, first)
    last = client.get(first.json()["next"], headers=tokens["read"])
    assert last.json()["next"] is None
    contract.check(LIST, last)
    items = first.json()["results"] + last.json()["results"]
    assert book["no_data"].crm_account_id in {i["crm_account_id"] for i in items}
    empty = client.get(f"{LIST}?updated_since=2099-01-01T00:00:00Z", headers=tokens["read"])
    assert empty.json()["results"] == []
    contract.check(LIST, empty)

    for query in ("limit=0", "updated_since=soon", "cursor=x", "offset=3"):
        bad = client.get(f"{LIST}?{query}", headers=tokens["read"])
        assert bad.status_code == 400
        contract.check(LIST, bad)
    for who, status in (("none", 401), ("unknown", 401), ("ingest", 403)):
        refused = client.get(LIST, headers=tokens[who])
        assert refused.status_code == status
        contract.check(LIST, refused)


def test_the_single_account_answers_as_documented(client, contract, book, tokens):
    for company in (*book["scored"], book["no_data"]):
        response = client.get(
            f"/api/v1/accounts/{company.crm_account_id}/health", headers=tokens["read"]
        )
        assert response.status_code == 200
        contract.check(ONE, response)
    no_data = client.get(
        f"/api/v1/accounts/{book['no_data'].crm_account_id}/health", headers=tokens["read"]
    ).json()
    assert no_data["as_of"] is None and no_data["health_score_value"] is None

    for crm_id in ("no-such-account", book["never_scored"].crm_account_id):
        missing = client.get(f"/api/v1/accounts/{crm_id}/health", headers=tokens["read"])
        assert missing.status_code == 404
        contract.check(ONE, missing)
    url = f"/api/v1/accounts/{book['scored'][0].crm_account_id}/health"
    for who, status in (("none", 401), ("unknown", 401), ("ingest", 403)):
        refused = client.get(url, headers=tokens[who])
        assert refused.status_code == status
        contract.check(ONE, refused)


def test_the_csv_answers_as_documented(client, contract, book, tokens):
    response = client.get(CSV, headers=tokens["read"])
    assert response.status_code == 200
    contract.check(CSV, response)
    assert len(list(csv.reader(io.StringIO(response.content.decode())))) == 1 + 4
    for who, status in (("none", 302), ("unknown", 401), ("ingest", 403)):
        refused = client.get(CSV, headers=tokens[who])
        assert refused.status_code == status
        contract.check(CSV, refused)


@pytest.mark.parametrize("path", [LIST, ONE, CSV])
def test_a_throttled_guesser_is_answered_as_documented(settings, contract, path):
    settings.TOKEN_FAILURE_RATE = "1/m"
    guesser = Client(REMOTE_ADDR=fresh_address())
    url = path.replace("{crm_account_id}", "X")
    assert guesser.get(url, headers={"Authorization": "Bearer upt_guess"}).status_code == 401
    throttled = guesser.get(url, headers={"Authorization": "Bearer upt_guess"})
    assert throttled.status_code == 429
    contract.check(path, throttled)


@pytest.mark.parametrize(
    ("path", "meets_the_database"),
    [
        (LIST, "usage_portal.web.api.views.current_snapshots_page"),
        (ONE, "usage_portal.web.api.views.current_snapshot"),
        (CSV, "usage_portal.web.api.views.build_health_csv"),
    ],
)
def test_an_outage_is_answered_as_documented(
    monkeypatch, contract, tokens, path, meets_the_database
):
    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(meets_the_database, down)
    url = path.replace("{crm_account_id}", "X")
    response = Client().get(url, headers={**tokens["read"], "Accept": "application/json"})
    assert response.status_code == 503
    contract.check(path, response)


# --------------------------------------------------------------------------------------------------
# Drift: the document must change with the payload


def test_a_field_added_to_the_payload_fails_until_it_is_documented(
    client, contract, book, tokens, monkeypatch
):
    monkeypatch.setattr(
        "usage_portal.web.api.views.health_payload",
        lambda snapshot: {**health_payload(snapshot), "arr": 120000},
    )
    response = client.get(LIST, headers=tokens["read"])
    with pytest.raises(ValidationError, match="'arr' was unexpected"):
        contract.check(LIST, response)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda body: body.pop("scheme"), "'scheme' is a required property"),
        (lambda body: body.update(adoption_count="2"), "is not of type 'integer', 'null'"),
        (lambda body: body.update(as_of="03/01/2026"), "is not a 'date'"),
        (lambda body: body["measures"]["scm"].update(color="Amber"), "is not one of"),
        (lambda body: body["measures"]["scm"].update(points=50), "'points' was unexpected"),
        (lambda body: body["measures"].update(engagement={}), "'engagement' was unexpected"),
        (lambda body: body["measures"].pop("cd"), "'cd' is a required property"),
    ],
)
def test_a_changed_or_missing_field_fails_too(client, contract, book, tokens, change, message):
    url = f"/api/v1/accounts/{book['scored'][0].crm_account_id}/health"
    body = client.get(url, headers=tokens["read"]).json()
    contract.validate(contract.schema("AccountHealth"), body)
    change(body)
    with pytest.raises(ValidationError, match=message):
        contract.validate(contract.schema("AccountHealth"), body)
