"""Times in the reader's zone: which zone a request uses, and how a moment reads in it.

Everything is stored in UTC (``USE_TZ``, ``TIME_ZONE = "UTC"``): a zone changes only how times
read. ``TimeZoneMiddleware`` activates one zone per request (Django's
``timezone.activate``), so templates show aware datetimes in it (``|date``, and ``|moment`` of
``usage_portal.web.templatetags.moments``), and text built in Python goes through
``moment_text`` / ``localized`` here. The zone is, first that applies:

1. the one the person chose on their profile (``accounts.models.UserPreferences``), read once
   per session and kept in it, so a page costs no query for it;
2. their browser's, which ``static/js/timezone.js`` puts in the ``tz`` cookie (a name the
   portal does not know is ignored: ``accounts.zones.zone_named``);
3. UTC.

E-mails (the drop digest) are written by the worker, where no zone is active, and downloads
(CSV, XLSX, the API) write UTC explicitly (``kit.exports``): both stay in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from django.utils import timezone

from accounts.models import UserPreferences
from accounts.zones import zone_named

#: The cookie static/js/timezone.js writes the browser's zone name into.
COOKIE = "tz"
#: Where a session keeps its person's chosen zone ("" when they chose none) once read.
SESSION_KEY = "time_zone_chosen"
DEFAULT = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class ReaderZone:
    """The zone a request shows times in, and why: ``profile``, ``browser`` or ``default``."""

    zone: ZoneInfo
    source: str

    @property
    def name(self) -> str:
        return self.zone.key


def browser_zone_name(request) -> str:
    """The zone the browser said it is in (the ``tz`` cookie), or "" if none or not a zone."""
    name = request.COOKIES.get(COOKIE, "")
    return name if zone_named(name) is not None else ""


def chosen_zone_name(request) -> str:
    """The zone the signed-in person chose, or "" (nobody signed in, or no choice).

    Read from the database once per session, then from the session: the profile page writes
    both (``choice_remember``). Another of the person's sessions picks a change up when it
    signs in again.
    """
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if user is None or session is None or not user.is_authenticated:
        return ""
    name = session.get(SESSION_KEY)
    if name is None:
        name = session[SESSION_KEY] = UserPreferences.time_zone_of(user)
    return name if zone_named(name) is not None else ""


def choice_remember(request, name: str) -> None:
    """Keep a new choice in this session too (the database has it already)."""
    request.session[SESSION_KEY] = name


def reader_zone(request) -> ReaderZone:
    chosen = zone_named(chosen_zone_name(request))
    if chosen is not None:
        return ReaderZone(chosen, "profile")
    browser = zone_named(browser_zone_name(request))
    if browser is not None:
        return ReaderZone(browser, "browser")
    return ReaderZone(DEFAULT, "default")


class TimeZoneMiddleware:
    """Activates the reader's zone for the request (after ``AuthenticationMiddleware``: it
    needs the person). Always set and always reset: a worker thread serves many people."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timezone.activate(reader_zone(request).zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def localized(when: datetime) -> datetime:
    """``when`` in the active zone; a naive datetime is taken as UTC (as the portal stores)."""
    if timezone.is_naive(when):
        when = when.replace(tzinfo=UTC)
    return timezone.localtime(when)


def moment_text(when: datetime | None) -> str:
    """A moment in the reader's zone with the zone's abbreviation, "5 Dec 2026 14:03 CET" (""
    for None): the one format of a moment on the pages. An f-string, as pages print hundreds
    (a template's ``date`` filter costs 30 times more)."""
    if when is None:
        return ""
    local = localized(when)
    return f"{local:%-d %b %Y %H:%M %Z}"


def short_moment_text(when: datetime | None) -> str:
    """A moment days away at most (when a pending change applies), short: "5 Dec 14:03 CET"."""
    if when is None:
        return ""
    local = localized(when)
    return f"{local:%-d %b %H:%M %Z}"


def day_of(when: datetime | date) -> date:
    """The reader's calendar day of a moment; a date stays as it is."""
    return localized(when).date() if isinstance(when, datetime) else when
