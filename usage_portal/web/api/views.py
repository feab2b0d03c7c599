"""Data out: the health API (session or ingest token), the health CSV, instance-type exports.

Thin shells: the payloads and files come from ``scoring.exports``, the snapshot from
``selectors``, the token check from ``instances.services.tokens``.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from instances.services.tokens import ingest_token_authenticate
from scoring.exports import health_csv as build_health_csv
from scoring.exports import (
    health_payload,
    instance_types_export_write,
    latest_instance_type_export,
)
from usage_portal.web.api.selectors import account_exists, current_snapshot


def _bearer_ok(request: HttpRequest) -> bool:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and ingest_token_authenticate(secret.strip()) is not None


@login_not_required
@require_GET
def account_health(request: HttpRequest, crm_account_id: str) -> HttpResponse:
    """``GET /api/v1/accounts/<crm_account_id>/health`` in the shape of product.md §6."""
    if not (request.user.is_authenticated or _bearer_ok(request)):
        return JsonResponse(
            {"error": "authentication required: a session or 'Authorization: Bearer <token>'"},
            status=401,
        )
    snapshot = current_snapshot(crm_account_id)
    if snapshot is None:
        if account_exists(crm_account_id):
            return JsonResponse({"error": "scores not computed yet for this account"}, status=404)
        return JsonResponse({"error": f"no account with CRM id {crm_account_id}"}, status=404)
    return JsonResponse(health_payload(snapshot))


@require_GET
def health_csv(request: HttpRequest) -> HttpResponse:
    """Every account's Salesforce-style health fields; read-only, so every role may download."""
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
