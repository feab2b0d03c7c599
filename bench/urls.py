"""The app's routes plus the benchmark's floor page (used only by ``bench/run.py``).

The floor is what any signed-in page costs before its own work: the middleware stack, the
session and user, and ``base.html`` with its context processors, from a view that runs no query.
"""

from django.shortcuts import render
from django.urls import include, path


def floor(request):
    return render(request, "base.html", {"nav": ""})


urlpatterns = [
    path("bench/floor/", floor, name="bench_floor"),
    path("", include("usage_portal.urls")),
]
