"""The drops worklist (CSMs see their accounts' open drops, ops all) and closing one."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import permissions
from scoring.alerts import AlertClosed, alert_close
from scoring.drops import MEASURE_LABELS
from scoring.models import AlertStatus, HealthAlert
from usage_portal.web.alerts.selectors import AGES, Narrowing, alerts_list

NOTE_LIMIT = 500


def worklist(request: HttpRequest) -> HttpResponse:
    csm = permissions.owns_accounts(request.user)
    narrowing = Narrowing.of(request.GET, csm=csm)
    rows = list(alerts_list(request.user, narrowing))
    closable = {a.pk for a in rows if permissions.can_close_alert(request.user, a.company)}
    return render(
        request,
        "alerts/worklist.html",
        {
            "nav": "alerts",
            "rows": rows,
            "closable": closable,
            "narrowing": narrowing,
            "is_csm": csm,
            "measures": MEASURE_LABELS,
            "ages": AGES,
            "statuses": AlertStatus.choices,
            "note_limit": NOTE_LIMIT,
        },
    )


@require_POST
def close(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(HealthAlert.objects.select_related("company"), pk=alert_id)
    if not permissions.can_close_alert(request.user, alert.company):
        raise PermissionDenied("You may close drops on your own accounts only.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}):
        back = reverse("alerts")
    note = request.POST.get("note", "").strip()
    if not note:
        messages.error(request, "Say why you close it: the note is the audit trail's answer.")
        return redirect(back)
    if len(note) > NOTE_LIMIT:
        messages.error(request, f"The note is {len(note)} characters; at most {NOTE_LIMIT}.")
        return redirect(back)
    try:
        alert_close(alert_id=alert.pk, by=request.user, note=note)
    except AlertClosed as exc:
        messages.info(request, f"That drop was closed already ({exc}).")
        return redirect(back)
    messages.success(request, f"Closed the {alert.measure_label} drop on {alert.company.name}.")
    return redirect(back)
