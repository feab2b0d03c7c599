from functools import update_wrapper

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.permissions import can_edit_any
from instances.admin import ReadOnlyAdmin

from .models import (
    AdminJob,
    AdminJobKind,
    AdminJobState,
    HealthAlert,
    HealthAlertEvent,
    MonthlyScore,
    SchemeChange,
    ScoreSnapshot,
    ScoringConfig,
)
from .schemes import PRESETS
from .services import AdminJobBusy, admin_job_start
from .tasks import admin_job_queue

# --------------------------------------------------------------------------------------------------
# Background jobs: the request records the job and publishes its task after the commit, then
# sends ops to a progress page that polls the job's status (pretix's AsyncAction, with the
# database row as the result store: the app runs Celery without a result backend).


def may_run_jobs(request) -> bool:
    """Ops in the admin: who may start a background job and follow its progress."""
    return admin.site.has_permission(request) and can_edit_any(request.user)


def _when(moment) -> str:
    return f"{timezone.localtime(moment):%-d %b %Y %H:%M:%S %Z}" if moment else ""


def job_status(job: AdminJob) -> dict:
    """What the progress page shows, as its JSON status endpoint sends it."""
    done, total = job.done_count, job.total
    who = job.requested_by.get_username() if job.requested_by else "system"
    if job.state == AdminJobState.QUEUED:
        text = "Waiting for a worker…"
    elif job.state == AdminJobState.RUNNING:
        text = "Starting…" if total is None else f"Recomputing {done:,} of {total:,} accounts…"
    elif job.state == AdminJobState.DONE:
        text = job.message or "Done."
    else:
        text = "Failed."
    if job.finished:
        detail = f"Finished {_when(job.finished_at)}; requested by {who} {_when(job.requested_at)}."
    else:
        detail = f"Requested by {who} {_when(job.requested_at)}."
    return {
        "id": job.pk,
        "kind": job.kind,
        "kind_label": job.get_kind_display(),
        "state": job.state,
        "state_label": job.get_state_display(),
        "finished": job.finished,
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else (100 if job.finished else 0),
        "text": text,
        "detail": detail,
        "requested_by": who,
        "requested_at": job.requested_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "message": job.message,
        "error": job.error,
    }


def progress_url(job: AdminJob) -> str:
    return reverse("admin:scoring_adminjob_progress", args=[job.pk])


def busy_message(job: AdminJob | None) -> str:
    if job is None:
        return "Another background job was starting; try again."
    who = job.requested_by.get_username() if job.requested_by else "system"
    return (
        f"{job.get_kind_display()} is already {job.get_state_display().lower()} (requested by "
        f"{who} {_when(job.requested_at)}): one job at a time rescores every account; start "
        "this one when it has finished."
    )


def start_job(request, kind: str, arguments: dict | None = None):
    """Record the job, queue it after the commit, and answer with its progress page; refused
    (with the running job's page) while another job is queued or running."""
    if not may_run_jobs(request):
        raise PermissionDenied
    try:
        job = admin_job_start(kind=kind, by=request.user, arguments=arguments)
    except AdminJobBusy as busy:
        messages.error(request, busy_message(busy.job))
        return redirect(progress_url(busy.job) if busy.job else "admin:scoring_adminjob_changelist")
    admin_job_queue(job.pk)
    return redirect(progress_url(job))


@admin.register(AdminJob)
class AdminJobAdmin(ReadOnlyAdmin):
    """Every background job: who asked, when, how far it got, and how it ended."""

    list_display = ("__str__", "state", "progress", "requested_by", "requested_at", "finished_at")
    list_filter = ("state", "kind")
    list_select_related = ("requested_by",)
    change_list_template = "admin/scoring/adminjob/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "may_run_jobs": may_run_jobs(request)}
        return super().changelist_view(request, extra_context)

    @admin.display(description="Progress")
    def progress(self, obj):
        counts = f"{obj.done_count:,} of {obj.total:,}" if obj.total is not None else "—"
        return format_html('<a href="{}">{}</a>', progress_url(obj), counts)

    def get_urls(self):
        return [
            path(
                "<int:job_id>/progress/",
                self._ops_only(self.progress_view),
                name="scoring_adminjob_progress",
            ),
            path(
                "<int:job_id>/status/",
                self._ops_only(self.status_view),
                name="scoring_adminjob_status",
            ),
            path(
                "recompute/",
                self._ops_only(require_POST(self.recompute_view)),
                name="scoring_adminjob_recompute",
            ),
            *super().get_urls(),
        ]

    def _ops_only(self, view):
        """403 for anyone signed in but ops (the admin's own wrapper would send them to its
        sign-in page, which a polling script cannot follow); nobody signed in meets the
        portal's sign-in page first. Never cached: the status changes every second."""

        def wrapper(request, *args, **kwargs):
            if not may_run_jobs(request):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return never_cache(update_wrapper(wrapper, view))

    def progress_view(self, request, job_id: int):
        job = get_object_or_404(AdminJob.objects.select_related("requested_by"), pk=job_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{job.get_kind_display()} (job #{job.pk})",
            "job": job,
            "status": job_status(job),
            "status_url": reverse("admin:scoring_adminjob_status", args=[job.pk]),
        }
        return TemplateResponse(request, "admin/scoring/adminjob/progress.html", context)

    def status_view(self, request, job_id: int):
        job = get_object_or_404(AdminJob.objects.select_related("requested_by"), pk=job_id)
        return JsonResponse(job_status(job))

    def recompute_view(self, request):
        return start_job(request, AdminJobKind.RECOMPUTE_ALL, {"history": True})


class ScoringConfigForm(forms.ModelForm):
    scheme = forms.ChoiceField(
        choices=[(name, f"{name} — {s.description}") for name, s in PRESETS.items()]
    )
    rebuild_history = forms.BooleanField(
        required=False, initial=True, help_text="Recompute monthly history under the new scheme."
    )

    class Meta:
        model = ScoringConfig
        fields = ["scheme"]

    def clean(self):
        cleaned = super().clean()
        # Refused on the form, with nothing changed (the constraint catches a race).
        busy = AdminJob.objects.active().select_related("requested_by").first()
        if busy is not None:
            raise forms.ValidationError(busy_message(busy))
        return cleaned


@admin.register(ScoringConfig)
class ScoringConfigAdmin(admin.ModelAdmin):
    """Switching the scheme is recorded at once (with its audit event) and the rescore of every
    account runs as a background job, whose progress page the save leads to."""

    form = ScoringConfigForm
    list_display = ("scheme", "changed_at", "changed_by")
    readonly_fields = ("changed_at", "changed_by")

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not ScoringConfig.objects.exists()

    def save_model(self, request, obj, form, change):
        # The admin's save is one transaction: the switch, its job and the admin's log entry
        # commit together, and the task is published after. Refused here only when another
        # request won the race past the form's check: nothing is switched, the admin's log
        # entry says "changed" all the same.
        request.scoring_job_response = start_job(
            request,
            AdminJobKind.SCHEME_SWITCH,
            {
                "scheme": form.cleaned_data["scheme"],
                "rebuild_history": form.cleaned_data.get("rebuild_history", False),
            },
        )
        obj.pk = 1

    def response_add(self, request, obj, post_url_continue=None):
        return getattr(request, "scoring_job_response", None) or super().response_add(
            request, obj, post_url_continue
        )

    def response_change(self, request, obj):
        return getattr(request, "scoring_job_response", None) or super().response_change(
            request, obj
        )


@admin.register(SchemeChange)
class SchemeChangeAdmin(ReadOnlyAdmin):
    list_display = ("from_scheme", "to_scheme", "changed_at", "changed_by", "rebuilt_history")


@admin.register(ScoreSnapshot)
class ScoreSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("company", "computed_at", "scheme", "overall_color", "is_current", "reason")
    list_filter = ("is_current", "overall_color", "scheme")
    search_fields = ("company__name", "company__crm_account_id")
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    show_full_result_count = False
    actions = ["recompute"]

    @admin.action(
        description="Recompute scores of every company (in the background)",
        permissions=["recompute"],
    )
    def recompute(self, request, queryset):
        return start_job(request, AdminJobKind.RECOMPUTE_ALL, {"history": True})

    def has_recompute_permission(self, request) -> bool:
        return may_run_jobs(request)


@admin.register(MonthlyScore)
class MonthlyScoreAdmin(ReadOnlyAdmin):
    list_display = ("company", "month", "scheme", "overall_color", "product_usage_value")
    search_fields = ("company__name",)
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    show_full_result_count = False


class HealthAlertEventInline(admin.TabularInline):
    model = HealthAlertEvent
    extra = 0
    can_delete = False
    fields = ("at", "kind", "from_color", "to_color", "by", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(HealthAlert)
class HealthAlertAdmin(ReadOnlyAdmin):
    """Every drop on every account, with its audit trail; closed from the worklist (a note)."""

    list_display = ("company", "measure_name", "status", "from_color", "to_color", "raised_at")
    list_filter = ("status", "measure", "to_color")
    search_fields = ("company__name", "company__crm_account_id")
    list_select_related = ("company",)
    raw_id_fields = ("company", "snapshot")
    inlines = [HealthAlertEventInline]

    @admin.display(description="Measure", ordering="measure")
    def measure_name(self, obj):
        return obj.measure_label
