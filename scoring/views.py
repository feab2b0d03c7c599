"""The Product Usage Reporting dashboard."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Company


def dashboard(request: HttpRequest) -> HttpResponse:
    companies = Company.objects.select_related("csm").order_by("name")
    return render(request, "accounts/dashboard.html", {"companies": companies, "nav": "dashboard"})
