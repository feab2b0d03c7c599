"""The ping endpoints GitLab's own client talks to, and the manual upload page."""

from __future__ import annotations

import json

import orjson
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .forms import PingUploadForm
from .models import PingReport, PingSource
from .parsing import (
    PayloadError,
    PingRejected,
    decode_body,
    parse_ping,
    parse_ping_error,
    parse_ping_metadata,
)
from .services import (
    PingInput,
    ingest_token_authenticate,
    ping_report_store,
    pings_store,
    rejected_payload_keep,
)

JSON_TYPES = ("application/json", "application/x-json", "text/json")


def _error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _read_json_request(
    request: HttpRequest,
) -> tuple[object | None, bytes | None, JsonResponse | None]:
    """Authenticate and decode a sender's request: (payload, raw JSON bytes, error response)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if header and (scheme.lower() != "bearer" or not ingest_token_authenticate(secret.strip())):
        return None, None, _error(401, "invalid ingest token")
    if not header and not settings.ALLOW_ANONYMOUS_PINGS:
        return (
            None,
            None,
            _error(401, "an ingest token is required: send 'Authorization: Bearer <token>'"),
        )
    content_type = (request.content_type or "").lower()
    if content_type not in JSON_TYPES:
        return (
            None,
            None,
            _error(415, f"Content-Type must be application/json, not {content_type or 'missing'}"),
        )
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return None, None, _error(400, "invalid Content-Length")
    if length > settings.PING_MAX_BODY_BYTES:
        return (
            None,
            None,
            _error(
                413, f"body of {length} bytes exceeds the limit of {settings.PING_MAX_BODY_BYTES}"
            ),
        )
    try:
        raw = request.body
    except RequestDataTooBig:
        return None, None, _error(413, f"body exceeds the limit of {settings.PING_MAX_BODY_BYTES}")
    encoding = request.headers.get("Content-Encoding")
    try:
        payload = decode_body(
            raw, content_encoding=encoding, max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES
        )
    except PayloadError as exc:
        return None, None, _error(exc.status, str(exc))
    # Keep the JSON as received (decompressed) for audit and re-parsing.
    raw_json = raw if not encoding or encoding.lower() == "identity" else _dump_json(payload)
    return payload, raw_json, None


def _dump_json(payload: object) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # integers beyond 64 bits: the standard library copes
        return json.dumps(payload).encode()


@login_not_required
@csrf_exempt
@require_POST
def usage_data(request: HttpRequest) -> HttpResponse:
    """``POST /usage_data``: store one Service Ping; answer as GitLab's Versions app does."""
    payload, raw, error = _read_json_request(request)
    if error:
        return error
    try:
        parsed = parse_ping(payload)
    except PingRejected as exc:
        rejected_payload_keep(source=PingSource.HTTP, reason=exc.reason, raw=raw)
        return _error(422, f"not a usage ping: {exc.reason}")
    summary = pings_store(inputs=[PingInput.from_parsed(parsed, raw=raw)], source=PingSource.HTTP)
    outcome = summary.outcomes[0]
    body = {
        "conv_index": {"usage_data_id": outcome.ping_id},
        "status": outcome.status,
        "unmapped": outcome.unmapped,
    }
    return JsonResponse(body, status=201 if outcome.status == "accepted" else 200)


def _report_view(kind: str, parse):
    @login_not_required
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        payload, _, error = _read_json_request(request)
        if error:
            return error
        try:
            parsed = parse(payload)
        except PingRejected as exc:
            return _error(422, exc.reason)
        report = ping_report_store(kind=kind, parsed=parsed, payload=payload)
        return JsonResponse({"id": report.id}, status=201)

    view.__name__ = f"usage_ping_{kind}"
    return view


usage_ping_errors = _report_view(PingReport.Kind.ERROR, parse_ping_error)
usage_ping_metadata = _report_view(PingReport.Kind.METADATA, parse_ping_metadata)


@permission_required("instances.upload_pings", raise_exception=True)
def ping_upload(request: HttpRequest) -> HttpResponse:
    """``/usage_data/new``: upload downloaded payload files from air-gapped instances."""
    results = None
    if request.method == "POST":
        form = PingUploadForm(request.POST, request.FILES)
        if form.is_valid():
            results = form.ingest()
            stored = sum(1 for r in results if r.ok)
            level = messages.SUCCESS if stored == len(results) else messages.WARNING
            messages.add_message(request, level, f"{stored} of {len(results)} file(s) stored.")
    else:
        form = PingUploadForm()
    return render(
        request, "instances/upload.html", {"form": form, "results": results, "nav": "upload"}
    )
