"""The ping endpoints GitLab's own client talks to, and the manual upload page.

The three sender endpoints are the only CSRF-exempt views of the app: they are called by
machines with no session. Every refusal is a JSON ``{"error": ...}`` with a 4xx status; bad
input never reaches the database half-way (a ping is stored whole or not at all).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from instances.companions import parse_ping_error, parse_ping_metadata
from instances.models import PingReport, PingSource, TokenScope
from instances.parsing import PingRejected, parse_ping
from instances.services.batching import http_pings
from instances.services.files import UploadResult, ping_uploads_store
from instances.services.inputs import PingInput
from instances.services.rejections import ping_report_store, rejected_payload_keep
from instances.services.tokens import TokenRefused, ingest_token_authenticate
from instances.transport import PayloadError, inflate_body, loads_json
from usage_portal.web.ingest.forms import PingUploadForm

logger = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/x-json", "text/json")


class _Refused(Exception):
    """Raised while reading a sender's request; becomes a JSON error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="usage_data"'
    return response


def _sender_endpoint(view):
    """POST only, no session, no CSRF; a ``_Refused`` raised inside becomes a JSON 4xx."""

    @login_not_required
    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            response = _error(405, f"use POST, not {request.method}")
            response["Allow"] = "POST"
            return response
        try:
            return view(request)
        except _Refused as refusal:
            return _error(refusal.status, refusal.message)

    return wrapper


def _authenticate(request: HttpRequest) -> None:
    """A valid token with the ``ingest`` scope, or none at all when ALLOW_ANONYMOUS_PINGS is on.

    A token that is sent is always checked, even when anonymous pings are allowed: a sender
    with a wrong, revoked, expired or read-only token should learn it.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _Refused(401, "Authorization must be 'Bearer <ingest token>'")
        try:
            ingest_token_authenticate(secret.strip(), scope=TokenScope.INGEST)
        except TokenRefused as refusal:
            raise _Refused(refusal.status, refusal.message) from None
    elif not settings.ALLOW_ANONYMOUS_PINGS:
        raise _Refused(401, "an ingest token is required: send 'Authorization: Bearer <token>'")


def _read_json(request: HttpRequest) -> tuple[object, bytes]:
    """Authenticate, then read the body within the size limits: (JSON value, JSON text).

    The body is never read when its declared length is over PING_MAX_BODY_BYTES or missing
    (Django reads no more than Content-Length, so a body without one would arrive empty), and
    a gzip body is inflated in bounded steps up to PING_MAX_DECOMPRESSED_BYTES.
    """
    _authenticate(request)
    content_type = (request.content_type or "").lower()
    if content_type not in JSON_TYPES:
        raise _Refused(
            415, f"Content-Type must be application/json, not {content_type or 'missing'}"
        )
    declared = request.META.get("CONTENT_LENGTH") or ""
    if not declared:
        raise _Refused(411, "Content-Length is required (chunked bodies are not accepted)")
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if length < 0:
        raise _Refused(400, f"invalid Content-Length {declared[:32]!r}")
    limit = settings.PING_MAX_BODY_BYTES
    if length > limit:
        raise _Refused(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
    try:
        body = request.body
    except RequestDataTooBig:
        raise _Refused(413, f"body exceeds the limit of {limit} bytes") from None
    except (UnreadablePostError, OSError):
        raise _Refused(400, "the body could not be read (connection closed early?)") from None
    try:
        text = inflate_body(
            body,
            content_encoding=request.headers.get("Content-Encoding"),
            max_bytes=settings.PING_MAX_DECOMPRESSED_BYTES,
        )
        return loads_json(text), bytes(text)
    except PayloadError as exc:
        raise _Refused(exc.status, exc.reason) from None


@_sender_endpoint
def usage_data(request: HttpRequest) -> HttpResponse:
    """``POST /usage_data``: store one Service Ping; answer as GitLab's Versions app does.

    201 ``{"conv_index": {"usage_data_id": <id>}, ...}`` for a new ping, 200 with the stored
    ping's id for one already stored (GitLab's client accepts both). Metric leaves that are not
    numbers (text, booleans, negatives, numbers beyond 64 bits) are stored as unknown (NULL) and
    named in ``not_numeric``; the ping is still accepted. 422 when the body is JSON but not a
    Service Ping (not an object, no string uuid, no valid recorded_at, a recorded_at in the
    future or before 2016, ...); that body is kept for ops as a rejected payload.
    """
    payload, raw = _read_json(request)
    try:
        # Our clock judges the sender's: a ping recorded in the future is refused.
        parsed = parse_ping(payload, now=timezone.now())
    except PingRejected as exc:
        rejected_payload_keep(source=PingSource.HTTP, reason=exc.reason, raw=raw)
        return _error(422, f"not a usage ping: {exc.reason}")
    try:
        # Stored with the pings of whatever requests arrive meanwhile (group commit).
        outcome = http_pings.store(PingInput.from_parsed(parsed, raw=raw))
    except DataError as exc:
        # The parser bounds every value to its column; this is a last line of defence.
        logger.warning("ping from %s refused by the database: %s", parsed.uuid, exc)
        reason = "a value does not fit the database"
        rejected_payload_keep(source=PingSource.HTTP, reason=reason, raw=raw)
        return _error(422, f"not a usage ping: {reason}")
    body = {
        "conv_index": {"usage_data_id": outcome.ping_id},
        "status": outcome.status,
        "unmapped": outcome.unmapped,
        "not_numeric": list(parsed.not_numeric),
    }
    return JsonResponse(body, status=201 if outcome.status == "accepted" else 200)


def _report_endpoint(kind: str, parse):
    @_sender_endpoint
    def view(request: HttpRequest) -> HttpResponse:
        payload, _ = _read_json(request)
        try:
            parsed = parse(payload)
        except PingRejected as exc:
            return _error(422, exc.reason)
        report = ping_report_store(kind=kind, parsed=parsed, payload=payload)
        return JsonResponse({"id": report.id}, status=201)

    view.__name__ = view.__qualname__ = f"usage_ping_{kind}"
    view.__doc__ = "Keep a companion report for ops: 201 with its id, 422 when malformed."
    return view


usage_ping_errors = _report_endpoint(PingReport.Kind.ERROR, parse_ping_error)
usage_ping_metadata = _report_endpoint(PingReport.Kind.METADATA, parse_ping_metadata)


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """What became of one uploaded file, as the Result column says it."""

    label: str
    color: str  # the pill's colour class


STORED = UploadOutcome("Stored", "Green")
DUPLICATE = UploadOutcome("Duplicate — already stored", "NA")
UNMAPPED = UploadOutcome("Kept, unmapped", "Yellow")
REJECTED = UploadOutcome("Rejected", "Red")


def upload_outcome(result: UploadResult) -> UploadOutcome:
    """Stored, duplicate, kept unmapped or rejected, from ``ping_uploads_store``'s result."""
    return {"duplicate": DUPLICATE, "unmapped": UNMAPPED, "rejected": REJECTED}.get(
        result.status, STORED
    )


@permission_required("instances.upload_pings", raise_exception=True)
def ping_upload(request: HttpRequest) -> HttpResponse:
    """``/usage_data/new``: upload downloaded payload files from air-gapped instances."""
    results = None
    if request.method == "POST":
        form = PingUploadForm(request.POST, request.FILES)
        if form.is_valid():
            results = ping_uploads_store(uploads=form.cleaned_data["files"], by=request.user)
            stored = sum(1 for r in results if r.ok)
            level = messages.SUCCESS if stored == len(results) else messages.WARNING
            messages.add_message(
                request, level, f"{stored} of {len(results)} file(s) stored or already present."
            )
    else:
        form = PingUploadForm()
    rows = [(r, upload_outcome(r)) for r in results] if results else None
    return render(
        request,
        "instances/upload.html",
        {"form": form, "results": results, "rows": rows, "nav": "upload"},
    )
