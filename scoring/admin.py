from django import forms
from django.contrib import admin, messages

from instances.admin import ReadOnlyAdmin

from .models import (
    HealthAlert,
    HealthAlertEvent,
    MonthlyScore,
    SchemeChange,
    ScoreSnapshot,
    ScoringConfig,
)
from .schemes import PRESETS
from .services import companies_recompute_all, scheme_set


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


@admin.register(ScoringConfig)
class ScoringConfigAdmin(admin.ModelAdmin):
    """Switching the scheme goes through ``scheme_set``: recorded, then everything recomputed."""

    form = ScoringConfigForm
    list_display = ("scheme", "changed_at", "changed_by")
    readonly_fields = ("changed_at", "changed_by")

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not ScoringConfig.objects.exists()

    def save_model(self, request, obj, form, change):
        result = scheme_set(
            name=form.cleaned_data["scheme"],
            by=request.user,
            rebuild_history=form.cleaned_data.get("rebuild_history", False),
        )
        obj.pk = 1
        messages.info(request, f"Scheme changed ({result}); scores recomputed.")


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

    @admin.action(description="Recompute scores of every company now")
    def recompute(self, request, queryset):
        count = companies_recompute_all(reason=f"admin: {request.user.get_username()}")
        self.message_user(request, f"Recomputed {count} companies.")


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
