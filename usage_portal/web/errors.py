"""The portal's error pages: the layout and its navigation, and the reason when there is one.

A refusal or a missing page is raised with a sentence for the person (``PermissionDenied("You
can change only the accounts you own.")``, ``Http404("No such report.")``); these handlers show
it. Django's own wordings name a class or a model ("No Company matches the given query.", the
URL resolver's dictionary) and are replaced by the page's general text. The 500 page is
Django's ``server_error``: a static template rendered without the request or the database —
unless the error was an outage, which is a 503 (``usage_portal.middleware``).
"""

from __future__ import annotations

import re
import sys

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.csrf import requires_csrf_token

from usage_portal.middleware import unavailable_response

#: ``get_object_or_404``'s message: it names the model, not what the person asked for.
_GENERIC_NOT_FOUND = re.compile(r"No \w+ matches the given query\.")


def reason(exception: BaseException | None) -> str:
    """The sentence ``exception`` was raised with, or "" when it has none meant for a person."""
    args = getattr(exception, "args", ())
    message = args[0] if args else ""
    if not isinstance(message, str) or _GENERIC_NOT_FOUND.fullmatch(message):
        return ""
    return message.strip()


def _error_page(request: HttpRequest, exception, status: int) -> HttpResponse:
    return render(request, f"{status}.html", {"reason": reason(exception)}, status=status)


@requires_csrf_token
def bad_request(request: HttpRequest, exception=None) -> HttpResponse:
    # A suspicious request's message (a forged host, a broken session) is for the log only.
    return _error_page(request, None, 400)


@requires_csrf_token
def permission_denied(request: HttpRequest, exception=None) -> HttpResponse:
    return _error_page(request, exception, 403)


@requires_csrf_token
def page_not_found(request: HttpRequest, exception=None) -> HttpResponse:
    return _error_page(request, exception, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500, or the 503 when what failed was the database or the queue.

    Django calls the 500 handler inside its ``except`` block, so the exception is at hand.
    """
    return unavailable_response(request, sys.exc_info()[1]) or defaults.server_error(request)
