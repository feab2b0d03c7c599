"""The Integration API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Written out by hand as the contract: ``tests/web/test_openapi.py`` validates it as OpenAPI 3.1
and checks every endpoint's real answers (each status) against it, with ``AccountHealth``,
``Measure`` and the page closed (``additionalProperties: false``), so a field added to or
changed in ``scoring.scorecard.api_health_payload`` fails there until it is documented here.
Served without sign-in: it says what the API is, not what any account holds.
"""

from __future__ import annotations

from typing import Any, get_args

from django.conf import settings

from scoring.schemes import Color
from usage_portal.version import portal_version
from usage_portal.web.api.pagination import DEFAULT_LIMIT, MAX_LIMIT

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
        "required": True,
    }
}

_MEASURES = {
    "license_utilization": "License Utilization: billable users ÷ licensed seats (a fraction).",
    "user_engagement": "User Engagement: unique active users ÷ billable users (a fraction).",
    "scm": "Source code management use case, 0–100 points.",
    "ci": "Continuous integration use case, 0–100 points.",
    "cd": "Continuous delivery use case, 0–100 points.",
    "devsecops": "DevSecOps use case, 0–100 points.",
    "overall_product_usage": "Overall product usage, 0–100 points.",
    "csm_sentiment": "The CSM's sentiment, as points.",
    "overall_health": "Overall health, 0–100 points.",
}


def _schemas() -> dict[str, Any]:
    return {
        "Measure": {
            "type": "object",
            "description": "One coloured measure. `value` is null when it cannot be computed "
            "(colour `NA`); `reason` then says why, and is null when there is nothing to say.",
            "properties": {
                "color": {"type": "string", "enum": list(get_args(Color))},
                "value": {"type": ["number", "null"]},
                "reason": {"type": ["string", "null"]},
            },
            "required": ["color", "value", "reason"],
            "additionalProperties": False,
        },
        "AccountHealth": {
            "type": "object",
            "description": "An account's current health: the Salesforce `[GS] Health` fields. "
            "Every field is present; an account without usage data has every measure `NA`.",
            "properties": {
                "crm_account_id": {
                    "type": "string",
                    "description": "The Salesforce Account ID.",
                },
                "as_of": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "Date of the newest ping used; null without any.",
                },
                "scheme": {
                    "type": "string",
                    "description": "The scoring scheme and its version, e.g. "
                    "`gitlab-handbook-2025@2`.",
                },
                "measures": {
                    "type": "object",
                    "properties": {
                        key: {**_ref("Measure"), "description": text}
                        for key, text in _MEASURES.items()
                    },
                    "required": list(_MEASURES),
                    "additionalProperties": False,
                },
                "health_score_value": {
                    "type": ["number", "null"],
                    "description": "[GS] Health Score Value, 0–100.",
                },
                "adoption_count": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "[GS] Use Case Adoption Count.",
                },
            },
            "required": [
                "crm_account_id",
                "as_of",
                "scheme",
                "measures",
                "health_score_value",
                "adoption_count",
            ],
            "additionalProperties": False,
        },
        "AccountHealthPage": {
            "type": "object",
            "properties": {
                "results": {"type": "array", "items": _ref("AccountHealth")},
                "next": {
                    "type": ["string", "null"],
                    "format": "uri",
                    "description": "The next page (same filter and limit), null on the last.",
                },
                "updated_through": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "When the health of this page's last account was computed; "
                    "null for an empty page. The next sync's `updated_since` (less a margin).",
                },
            },
            "required": ["results", "next", "updated_through"],
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "description": "Every refusal: `error` says why, in a sentence.",
            "properties": {
                "error": {"type": "string"},
                "parameter": {
                    "type": "string",
                    "description": "400: the query parameter that was refused.",
                },
                "retry_after": {
                    "type": "integer",
                    "description": "429 and 503: seconds to wait, as in `Retry-After`.",
                },
            },
            "required": ["error"],
        },
    }


def _responses() -> dict[str, Any]:
    error = _ref("Error")
    return {
        "BadRequest": _json(error, "A query parameter is unknown, repeated or unreadable."),
        "Unauthorized": _json(
            error,
            "No session and no token, or a token that is unknown, revoked or expired.",
            {
                "WWW-Authenticate": {
                    "description": 'The challenge: `Bearer realm="api"`.',
                    "schema": {"type": "string"},
                    "required": True,
                }
            },
        ),
        "Forbidden": _json(error, "The token lacks the `read` scope (an ingest-only token)."),
        "TooManyRequests": _json(
            error,
            "Too many refused tokens from this address (`TOKEN_FAILURE_RATE`); every request "
            "carrying a token is refused until the window ends.",
            _RETRY_AFTER,
        ),
        "Unavailable": _json(
            error, "The portal's database or queue is down for a moment.", _RETRY_AFTER
        ),
    }


def _security() -> list[dict[str, list]]:
    return [{"bearerToken": []}, {"session": []}]


def _errors(*statuses: str) -> dict[str, Any]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "429": "TooManyRequests",
        "503": "Unavailable",
    }
    return {status: {"$ref": f"#/components/responses/{names[status]}"} for status in statuses}


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/accounts/health": {
            "get": {
                "operationId": "listAccountHealth",
                "summary": "Every scored account's current health, a page at a time",
                "description": "Ordered by when each account's health was last computed, "
                "oldest first (then by an internal id). Follow `next` until it is null. An "
                "account rescored while you page moves to the end and is listed again with "
                "its new health. Accounts not scored yet are not listed.",
                "security": _security(),
                "parameters": [
                    {
                        "name": "updated_since",
                        "in": "query",
                        "description": "Only accounts whose health was computed at or after "
                        "this moment (ISO 8601 date-time with a zone; write `+` as `%2B`).",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "Accounts per page.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "Opaque: where the previous page ended, as its `next` "
                        "link carries it.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(_ref("AccountHealthPage"), "A page of accounts."),
                    **_errors("400", "401", "403", "429", "503"),
                },
            }
        },
        "/api/v1/accounts/{crm_account_id}/health": {
            "get": {
                "operationId": "getAccountHealth",
                "summary": "One account's current health",
                "security": _security(),
                "parameters": [
                    {
                        "name": "crm_account_id",
                        "in": "path",
                        "required": True,
                        "description": "The Salesforce Account ID.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(_ref("AccountHealth"), "The account's health."),
                    "404": _json(
                        _ref("Error"), "No account with this id, or it is not scored yet."
                    ),
                    **_errors("401", "403", "429", "503"),
                },
            }
        },
        "/exports/health.csv": {
            "get": {
                "operationId": "downloadAccountHealthCsv",
                "summary": "Every scored account's health as a CSV file",
                "description": "The Salesforce field names as the header row ('Account ID', "
                "'Account Name', '[GS] Health: License Utilization', …), a measure's colour "
                "in its cell. Text a spreadsheet would run as a formula starts with `'`.",
                "security": _security(),
                "responses": {
                    "200": {
                        "description": "The file, as an attachment.",
                        "headers": {
                            "Content-Disposition": {
                                "description": "`attachment; "
                                'filename="account_health_<date>.csv"`.',
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "302": {
                        "description": "Neither a session nor an `Authorization` header (a "
                        "browser): the sign-in page, which returns here."
                    },
                    **_errors("401", "403", "429", "503"),
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Usage Portal Integration API",
            "version": portal_version(),
            "description": "Account health for CRM integrations (Salesforce `[GS] Health` "
            "fields). Authenticate with `Authorization: Bearer <token>`: a token with the "
            "`read` scope, created by ops in the admin (shown once). See docs/api.md.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token with the `read` scope (prefix `upt_`).",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.SESSION_COOKIE_NAME,
                    "description": "A signed-in portal session (any role).",
                },
            },
        },
    }
