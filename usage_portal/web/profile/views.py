"""The profile page: each person sets their own time zone (there is no one else's to reach).

A personal preference, so not in the audit trail. The choice is kept in the person's session
too (``timezones.choice_remember``), so the next page shows it without a query.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.models import UserPreferences
from usage_portal.web import timezones
from usage_portal.web.profile.forms import BROWSER, TimeZoneForm


@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    browser_zone = timezones.browser_zone_name(request)
    status = 200
    if request.method == "POST":
        form = TimeZoneForm(request.POST, browser_zone=browser_zone)
        if form.is_valid():
            name = form.cleaned_data["time_zone"]
            UserPreferences.time_zone_remember(user=request.user, time_zone=name)
            timezones.choice_remember(request, name)
            messages.success(request, _saved_message(name, browser_zone))
            return redirect("profile")
        messages.error(request, "The time zone was not changed: see the form below.")
        status = 400
    else:
        chosen = UserPreferences.time_zone_of(request.user)
        form = TimeZoneForm(initial={"time_zone": chosen}, browser_zone=browser_zone)
        # The page reads the stored choice anyway: a change made in another session shows
        # here, and from here on in this one.
        if chosen != timezones.chosen_zone_name(request):
            timezones.choice_remember(request, chosen)
            timezone.activate(timezones.reader_zone(request).zone)
    return render(
        request,
        "profile/profile.html",
        {
            "nav": "profile",
            "form": form,
            "reader": timezones.reader_zone(request),
            "now": timezone.now(),
        },
        status=status,
    )


def _saved_message(name: str, browser_zone: str) -> str:
    if name != BROWSER:
        return f"Times are now shown in {name}."
    if browser_zone:
        return f"Times now follow your browser's zone ({browser_zone})."
    return "Times now follow your browser's zone (UTC until it tells the portal its zone)."
