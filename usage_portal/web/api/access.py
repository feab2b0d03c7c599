"""Who may read the Integration API: the one gate of the health endpoints (JSON and CSV).

A request is let through when it carries a session (any signed-in role: health is read-only,
as every page of it) or ``Authorization: Bearer <token>`` with the ``read`` scope, checked by
``instances.services.tokens.ingest_token_authenticate``. Refusals are JSON: 401 with a
``WWW-Authenticate: Bearer`` challenge for no, an unknown, a revoked or an expired token, 403
for a token that may only send pings. Refused tokens count against ``TOKEN_FAILURE_RATE``
(``usage_portal.web.throttle.token_throttled``, applied here so that no route can forget it).
The method is checked first: anything but GET is 405 whoever asks.
"""

from __future__ import annotations

import functools
from typing import Literal

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from instances.models import TokenScope
from instances.services.tokens import TokenRefused, ingest_token_authenticate
from usage_portal.web.throttle import token_throttled

#: The challenge a 401 carries (RFC 6750 §3).
CHALLENGE = 'Bearer realm="api"'
NO_CREDENTIALS = "authentication required: a session or 'Authorization: Bearer <token>'"


def error_response(status: int, message: str, **extra) -> JsonResponse:
    """The API's error body, ``{"error": ..., ...}`` (the OpenAPI document's ``Error``)."""
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = CHALLENGE
    return response


def bearer_refusal(request: HttpRequest, *, scope: str) -> JsonResponse | None:
    """None when the request carries a token that may do ``scope`` now; else the refusal."""
    kind, _, secret = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        return error_response(401, NO_CREDENTIALS)
    try:
        ingest_token_authenticate(secret.strip(), scope=scope)
    except TokenRefused as refusal:
        return error_response(refusal.status, refusal.message)
    return None


def read_api(*, without_credentials: Literal["challenge", "sign_in"] = "challenge"):
    """Decorate a GET view of the Integration API: session or ``read`` token, throttled.

    ``without_credentials``: what a request with neither a session nor an ``Authorization``
    header gets — ``"challenge"`` (401, the JSON endpoints) or ``"sign_in"`` (the sign-in page,
    as every page: the CSV is also a download link people click in the portal).
    """

    def decorate(view):
        @functools.wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                if without_credentials == "sign_in" and "Authorization" not in request.headers:
                    return redirect_to_login(request.get_full_path())
                if (refusal := bearer_refusal(request, scope=TokenScope.READ)) is not None:
                    return refusal
            return view(request, *args, **kwargs)

        return login_not_required(require_GET(token_throttled(checked)))

    return decorate
