"""Data out: the Integration API (health as JSON, a page or one account, and as CSV), its
OpenAPI document, and the instance-type exports.

Thin shells: the payloads and files come from ``scoring.exports``, the snapshots from
``selectors``, the query string from ``pagination``, who may read from ``access.read_api``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_safe

from scoring.exports import health_csv as build_health_csv
from scoring.exports import (
    health_payload,
    instance_types_export_write,
    latest_instance_type_export,
)
from usage_portal.web.api.access import error_response, read_api
from usage_portal.web.api.openapi import openapi_document
from usage_portal.web.api.pagination import BadParameter, Position, health_query, next_query
from usage_portal.web.api.selectors import (
    account_exists,
    current_snapshot,
    current_snapshots_page,
)


@read_api()
def accounts_health(request: HttpRequest) -> HttpResponse:
    """``GET /api/v1/accounts/health``: every scored account's health, a page at a time."""
    try:
        query = health_query(dict(request.GET.lists()))
    except BadParameter as bad:
        return error_response(400, bad.message, parameter=bad.parameter)
    rows = current_snapshots_page(
        updated_since=query.updated_since, after=query.after, limit=query.limit
    )
    page = rows[: query.limit]
    next_url = None
    if len(rows) > query.limit:
        last = Position(page[-1].computed_at, page[-1].id)
        params = urlencode(next_query(query, last), quote_via=quote)
        next_url = request.build_absolute_uri(f"{request.path}?{params}")
    return JsonResponse(
        {
            "results": [health_payload(snapshot) for snapshot in page],
            "next": next_url,
            "updated_through": page[-1].computed_at.isoformat() if page else None,
        }
    )


@read_api()
def account_health(request: HttpRequest, crm_account_id: str) -> HttpResponse:
    """``GET /api/v1/accounts/<crm_account_id>/health`` in the shape of product.md §6."""
    snapshot = current_snapshot(crm_account_id)
    if snapshot is None:
        if account_exists(crm_account_id):
            return error_response(404, "scores not computed yet for this account")
        return error_response(404, f"no account with CRM id {crm_account_id}")
    return JsonResponse(health_payload(snapshot))


@login_not_required
@require_safe
def openapi_json(request: HttpRequest) -> HttpResponse:
    """The Integration API's OpenAPI 3.1 document: open to all, it holds no account's data."""
    return JsonResponse(openapi_document(), json_dumps_params={"ensure_ascii": False})


@read_api(without_credentials="sign_in")
def health_csv(request: HttpRequest) -> HttpResponse:
    """Every account's Salesforce-style health fields; read-only, so every role may download it,
    and so may a ``read`` token."""
    response = HttpResponse(build_health_csv(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="account_health_{stamp}.csv"'
    return response


@permission_required("scoring.download_exports", raise_exception=True)
@require_http_methods(["GET", "POST"])
def instance_types(request: HttpRequest) -> HttpResponse:
    """The weekly instance-type export: ``?download=1`` fetches the newest file; POST writes one."""
    if request.method == "POST":
        instance_types_export_write()
    latest = latest_instance_type_export()
    if request.GET.get("download"):
        if latest is None:
            raise Http404("no instance-type export has been written yet")
        return FileResponse(latest.open("rb"), as_attachment=True, filename=latest.name)
    return render(
        request,
        "scoring/exports.html",
        {"latest": latest, "nav": "exports"},
    )
