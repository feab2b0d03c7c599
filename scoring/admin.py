from django.contrib import admin

from instances.admin import ReadOnlyAdmin

from .models import MonthlyScore, SchemeChange, ScoreSnapshot, ScoringConfig


@admin.register(ScoringConfig)
class ScoringConfigAdmin(admin.ModelAdmin):
    list_display = ("scheme", "changed_at", "changed_by")
    readonly_fields = ("changed_at", "changed_by")


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


@admin.register(MonthlyScore)
class MonthlyScoreAdmin(ReadOnlyAdmin):
    list_display = ("company", "month", "scheme", "overall_color", "product_usage_value")
    search_fields = ("company__name",)
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    show_full_result_count = False
