"""Times in the reader's zone: which zone a request uses (the profile's choice, else the
browser's cookie, else UTC), the profile page that sets it, and pages printing a known moment
in it — cached parts included — while downloads stay in UTC."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import UserPreferences
from accounts.zones import zone_groups, zone_named
from instances.labels import label_change_request
from instances.models import Instance, LabelChange
from tests.conftest import make_user
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from usage_portal.web import timezones
from usage_portal.web.c360 import charts
from usage_portal.web.templatetags.moments import moment

pytestmark = pytest.mark.django_db

#: The moment the tests print: 15 Jan 2026 17:05 UTC (winter: CET, EST, JST).
REQUESTED = datetime(2026, 1, 15, 17, 5, tzinfo=UTC)
IN_BERLIN = "15 Jan 2026 18:05 CET"
IN_TOKYO = "16 Jan 2026 02:05 JST"
IN_UTC = "15 Jan 2026 17:05 UTC"
#: When that change is reflected in reports (24 hours later).
EFFECTIVE_IN_BERLIN = "16 Jan 2026 18:05 CET"
EFFECTIVE_IN_TOKYO = "17 Jan 2026 02:05 JST"


# --------------------------------------------------------------------------------------------------
# Which zone a request uses


def _active_zone_during(request) -> str:
    """The zone name the middleware made active while the view ran."""
    seen = {}

    def view(req):
        seen["zone"] = timezone.get_current_timezone_name()
        return None

    timezones.TimeZoneMiddleware(view)(request)
    return seen["zone"]


def _request(*, cookie: str | None = None, user=None, session=None):
    request = RequestFactory().get("/")
    if cookie is not None:
        request.COOKIES[timezones.COOKIE] = cookie
    if user is not None:
        request.user = user
        request.session = session if session is not None else SessionStore()
    return request


def test_the_browsers_zone_from_its_cookie_is_used():
    assert _active_zone_during(_request(cookie="America/New_York")) == "America/New_York"


def test_no_cookie_and_no_choice_is_utc():
    assert _active_zone_during(_request()) == "UTC"


@pytest.mark.parametrize(
    "cookie",
    [
        "Mars/Olympus_Mons",  # no such zone
        "europe/berlin",  # the database's names are case-sensitive
        "../../../../etc/passwd",  # ZoneInfo would read a path
        "/etc/localtime",
        "localtime",  # this machine's zone, not a place
        "Europe/Berlin; Path=/",
        "<script>alert(1)</script>",
        "Europe/" + "x" * 5000,
        "",
    ],
)
def test_a_cookie_naming_no_known_zone_is_ignored(cookie):
    assert _active_zone_during(_request(cookie=cookie)) == "UTC"


def test_the_persons_choice_wins_over_the_browser():
    user = make_user("chooser", "CSM")
    UserPreferences.time_zone_remember(user=user, time_zone="Asia/Tokyo")
    request = _request(cookie="America/New_York", user=user)
    assert _active_zone_during(request) == "Asia/Tokyo"


def test_without_a_choice_the_browser_then_utc():
    user = make_user("undecided", "CSM")
    UserPreferences.time_zone_remember(user=user, time_zone="")  # chose, then went back
    assert _active_zone_during(_request(cookie="Europe/Berlin", user=user)) == "Europe/Berlin"
    assert _active_zone_during(_request(user=user)) == "UTC"


def test_the_choice_is_read_once_per_session(django_assert_num_queries):
    user = make_user("once", "CSM")
    UserPreferences.time_zone_remember(user=user, time_zone="Asia/Tokyo")
    session = SessionStore()
    with django_assert_num_queries(1):
        assert _active_zone_during(_request(user=user, session=session)) == "Asia/Tokyo"
    with django_assert_num_queries(0):
        assert _active_zone_during(_request(user=user, session=session)) == "Asia/Tokyo"


def test_the_zone_is_reset_after_the_request_even_when_the_view_fails():
    def failing(request):
        raise RuntimeError("view failed")

    request = _request(cookie="Asia/Tokyo")
    with pytest.raises(RuntimeError):
        timezones.TimeZoneMiddleware(failing)(request)
    assert timezone.get_current_timezone_name() == "UTC"


def test_known_zones():
    assert zone_named("Europe/Berlin") is not None and zone_named("UTC") is not None
    assert zone_named("Etc/GMT+5") is not None  # known, though not offered in the list
    assert zone_named(None) is None and zone_named(42) is None
    europe = dict(zone_groups())["Europe"]
    assert ("Europe/Berlin", "Berlin") in europe
    assert ("America/Argentina/Buenos_Aires", "Argentina/Buenos Aires") in dict(zone_groups())[
        "America"
    ]


def test_a_moment_reads_in_the_active_zone_with_its_abbreviation():
    with timezone.override(zone_named("Europe/Berlin")):
        assert timezones.moment_text(REQUESTED) == IN_BERLIN
        assert moment(REQUESTED) == IN_BERLIN
        assert timezones.short_moment_text(REQUESTED) == "15 Jan 18:05 CET"
        # A moment near midnight falls on the reader's day; a day stays the day it is.
        assert timezones.day_of(datetime(2026, 1, 15, 23, 30, tzinfo=UTC)) == date(2026, 1, 16)
        assert timezones.day_of(date(2026, 1, 15)) == date(2026, 1, 15)
        # Summer time has its own abbreviation.
        assert (
            timezones.moment_text(datetime(2026, 7, 1, 12, tzinfo=UTC)) == "1 Jul 2026 14:00 CEST"
        )
    assert timezones.moment_text(REQUESTED) == IN_UTC
    assert timezones.moment_text(REQUESTED.replace(tzinfo=None)) == IN_UTC  # naive is UTC
    assert timezones.moment_text(None) == "" and moment(None) == ""


def test_a_chart_marker_is_stamped_in_the_zone_it_was_given():
    """Scheme-change markers arrive in the reader's zone (c360.selectors.scheme_markers)."""
    tokyo = REQUESTED.astimezone(zone_named("Asia/Tokyo"))
    figure = charts.scored_line(
        [
            charts.Point(date(2026, 1, 1), 0.5, "Green"),
            charts.Point(date(2026, 2, 1), 0.6, "Green"),
        ],
        name="LU",
        unit="fraction",
        y_title="%",
        markers=[charts.Marker(tokyo, "scheme → gitlab-dbt-2024")],
    )
    (note,) = figure["layout"]["annotations"]
    assert note["hovertext"] == "2026-01-16 02:05 JST: scheme → gitlab-dbt-2024"


# --------------------------------------------------------------------------------------------------
# The profile page


@pytest.fixture
def csm_client(client):
    user = make_user("csm_user", "CSM")
    client.force_login(user)
    client.user = user
    return client


def test_the_profile_offers_the_browsers_zone_first(csm_client):
    csm_client.cookies[timezones.COOKIE] = "Europe/Berlin"
    html = csm_client.get(reverse("profile")).content.decode()
    assert '<option value="" selected>Use my browser&#x27;s zone (Europe/Berlin)</option>' in html
    assert '<optgroup label="Asia">' in html and '<option value="Asia/Tokyo">Tokyo</option>' in html
    assert "Europe/Berlin" in html and "your browser" in html
    assert "always use UTC" in html  # e-mails and downloads


def test_an_unknown_zone_is_refused_with_a_message(csm_client):
    response = csm_client.post(reverse("profile"), {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "“Mars/Olympus_Mons” is not a time zone the portal knows" in html
    assert "The time zone was not changed" in html
    assert not UserPreferences.objects.exists()


def test_a_saved_zone_is_used_on_the_next_page(csm_client):
    csm_client.cookies[timezones.COOKIE] = "America/New_York"
    response = csm_client.post(reverse("profile"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302 and response["Location"] == reverse("profile")
    assert UserPreferences.time_zone_of(csm_client.user) == "Asia/Tokyo"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Times are now shown in Asia/Tokyo."
    ]
    html = csm_client.get(reverse("profile")).content.decode()
    assert '<option value="Asia/Tokyo" selected>Tokyo</option>' in html
    assert "JST" in html and "your choice" in html


def test_going_back_to_the_browsers_zone(csm_client):
    UserPreferences.time_zone_remember(user=csm_client.user, time_zone="Asia/Tokyo")
    csm_client.cookies[timezones.COOKIE] = "Europe/Berlin"
    response = csm_client.post(reverse("profile"), {"time_zone": ""}, follow=True)
    assert UserPreferences.time_zone_of(csm_client.user) == ""
    html = response.content.decode()
    assert "Times now follow your browser&#x27;s zone (Europe/Berlin)." in html
    assert "CET" in html or "CEST" in html


def test_each_person_changes_only_their_own_zone(csm_client):
    other = make_user("other_user", "CSM")
    UserPreferences.time_zone_remember(user=other, time_zone="Europe/Berlin")
    # No id to aim at: a stray field naming someone else changes nothing of theirs.
    csm_client.post(reverse("profile"), {"time_zone": "Asia/Tokyo", "user": other.pk})
    assert UserPreferences.time_zone_of(other) == "Europe/Berlin"
    assert UserPreferences.time_zone_of(csm_client.user) == "Asia/Tokyo"


def test_the_profile_write_needs_the_csrf_token():
    user = make_user("csrf_user", "CSM")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("profile"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 403
    assert not UserPreferences.objects.exists()


def test_a_change_made_in_another_session_shows_on_the_profile_page():
    user = make_user("two_browsers", "CSM")
    laptop, phone = Client(), Client()
    laptop.force_login(user)
    phone.force_login(user)
    phone.get(reverse("profile"))  # the phone's session keeps "no choice"
    laptop.post(reverse("profile"), {"time_zone": "Asia/Tokyo"})
    html = phone.get(reverse("profile")).content.decode()
    assert "Asia/Tokyo" in html and "your choice" in html


def test_the_user_menu_links_to_the_profile(csm_client):
    html = csm_client.get(reverse("dashboard")).content.decode()
    assert f'<a class="user-name" href="{reverse("profile")}"' in html
    assert 'src="/static/js/timezone.js"' in html


def test_the_sign_in_page_carries_the_zone_script(client):
    assert 'src="/static/js/timezone.js"' in client.get(reverse("login")).content.decode()


# --------------------------------------------------------------------------------------------------
# Pages print a known moment in the reader's zone


@pytest.fixture
def account(db):
    """An account its CSM owns, with a pending label change requested at ``REQUESTED``."""
    cache.clear()  # C360 parts are cached: every test builds its own
    csm = make_user("owner", "CSM")
    sub = SubscriptionFactory(company__csm=csm, company__name="Zone Inc")
    instance = InstanceFactory(subscription=sub, instance_type="unknown")
    store_ping(instance, days_ago=3, refresh=False)
    change = label_change_request(
        instance=instance, field="instance_type", value="production", by=csm, schedule=False
    )
    LabelChange.objects.filter(pk=change.pk).update(
        requested_at=REQUESTED, effective_at=REQUESTED + timedelta(hours=24)
    )
    sub.company.__class__.objects.filter(pk=sub.company_id).touch()  # a new data version
    return csm, instance


def _page_in(zone: str, csm, url: str, *, chosen: bool) -> str:
    client = Client()
    client.force_login(csm)
    if chosen:
        UserPreferences.time_zone_remember(user=csm, time_zone=zone)
    else:
        client.cookies[timezones.COOKIE] = zone
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


@pytest.mark.parametrize("chosen", [True, False], ids=["profile", "browser"])
def test_the_instance_edit_page_prints_the_change_in_the_readers_zone(account, chosen):
    csm, instance = account
    url = reverse("instance_edit", args=[instance.company_id, instance.pk])
    berlin = _page_in("Europe/Berlin", csm, url, chosen=chosen)
    assert IN_BERLIN in berlin and EFFECTIVE_IN_BERLIN in berlin
    tokyo = _page_in("Asia/Tokyo", csm, url, chosen=chosen)
    assert IN_TOKYO in tokyo and EFFECTIVE_IN_TOKYO in tokyo
    assert IN_BERLIN not in tokyo and IN_UTC not in tokyo and IN_UTC not in berlin


def test_cached_c360_parts_are_kept_per_zone(account):
    """The Instances section's rows and history are cached (fragment_cache): a Tokyo reader
    after a Berlin one must not get Berlin's times."""
    csm, instance = account
    url = reverse("account_instances", args=[instance.company_id])
    berlin = _page_in("Europe/Berlin", csm, url, chosen=False)
    assert EFFECTIVE_IN_BERLIN in berlin and IN_BERLIN in berlin
    tokyo = _page_in("Asia/Tokyo", csm, url, chosen=False)
    assert EFFECTIVE_IN_TOKYO in tokyo and IN_TOKYO in tokyo
    assert "CET" not in tokyo
    summary = _page_in(
        "Asia/Tokyo", csm, reverse("account_summary", args=[instance.company_id]), chosen=False
    )
    assert EFFECTIVE_IN_TOKYO in summary


def test_the_burndown_prints_the_pending_change_in_the_readers_zone(account):
    csm, _ = account
    html = _page_in("Asia/Tokyo", csm, reverse("burndown") + "?csm=", chosen=True)
    assert "17 Jan 02:05 JST" in html


def test_downloads_stay_in_utc_while_the_page_is_in_the_readers_zone(account):
    csm, instance = account
    # Late on the 15th in UTC is the 16th in Tokyo.
    Instance.objects.filter(pk=instance.pk).update(
        last_ping_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    )
    url = reverse("versions_report") + "?csm="
    assert "2026-01-16" in _page_in("Asia/Tokyo", csm, url, chosen=True)
    client = Client()
    client.force_login(csm)
    rows = list(csv.DictReader(io.StringIO(client.get(url + "&_export=csv").getvalue().decode())))
    assert [r["Last ping"] for r in rows] == ["2026-01-15"]
