from django.contrib import admin, messages
from django.utils.html import format_html

from .models import (
    IngestToken,
    Instance,
    LabelChange,
    License,
    MonthlyUsage,
    PingReport,
    RejectedPayload,
    UsagePing,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For audit data: visible to ops, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = ("__str__", "md5", "sha256", "subscription_name", "subscription", "mapped_via")
    list_filter = ("mapped_via", ("subscription", admin.EmptyFieldListFilter))
    search_fields = ("md5", "sha256", "subscription_name", "subscription__name")
    list_select_related = ("subscription",)
    raw_id_fields = ("subscription", "mapped_by")
    readonly_fields = ("mapped_by", "mapped_at", "first_seen_at", "last_seen_at")
    show_full_result_count = False


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "company",
        "subscription",
        "instance_type",
        "health_inclusion",
        "version",
        "last_ping_at",
    )
    list_filter = ("kind", "instance_type", "health_inclusion", "company__segment")
    search_fields = ("hostname", "uuid", "namespace_path", "=namespace_id", "company__name")
    list_select_related = ("company", "subscription")
    raw_id_fields = ("company", "subscription", "license")
    readonly_fields = ("first_ping_at", "last_ping_at", "created_at")
    show_full_result_count = False


@admin.register(UsagePing)
class UsagePingAdmin(ReadOnlyAdmin):
    list_display = ("instance", "recorded_at", "version", "source", "billable_users", "mapped")
    list_filter = ("source", ("subscription", admin.EmptyFieldListFilter))
    search_fields = ("instance__hostname", "instance__uuid", "license_md5", "license_sha256")
    list_select_related = ("instance",)
    raw_id_fields = ("instance", "license", "subscription")
    date_hierarchy = "recorded_at"
    show_full_result_count = False

    def get_queryset(self, request):
        # The compressed payload is tens of kB a row: never load it for a list.
        return super().get_queryset(request).defer("raw_payload")

    @admin.display(boolean=True)
    def mapped(self, obj):
        return obj.subscription_id is not None


@admin.register(MonthlyUsage)
class MonthlyUsageAdmin(ReadOnlyAdmin):
    list_display = ("instance", "company", "month", "recorded_at", "billable_users")
    list_select_related = ("instance", "company")
    raw_id_fields = ("instance", "company", "ping")
    search_fields = ("instance__hostname", "company__name")
    show_full_result_count = False


@admin.register(LabelChange)
class LabelChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "instance",
        "field",
        "old_value",
        "new_value",
        "author",
        "requested_at",
        "effective_at",
        "status",
        "applied_at",
    )
    list_filter = ("status", "field")
    search_fields = ("instance__hostname", "instance__uuid", "author")
    list_select_related = ("instance",)
    raw_id_fields = ("instance", "requested_by", "applied_by", "superseded_by")
    date_hierarchy = "requested_at"
    show_full_result_count = False


@admin.register(IngestToken)
class IngestTokenAdmin(admin.ModelAdmin):
    """Tokens for ``POST /usage_data``: the secret is shown once, on creation; only its hash is
    stored. Revoke rather than delete, so the audit of who sent what stays readable."""

    list_display = ("name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at")
    fields = ("name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        from .services import ingest_token_create

        token, secret = ingest_token_create(name=obj.name, by=request.user)
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        messages.warning(
            request,
            format_html("Copy this token now, it will not be shown again: <code>{}</code>", secret),
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        from django.utils import timezone

        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")


@admin.register(PingReport)
class PingReportAdmin(ReadOnlyAdmin):
    list_display = ("kind", "hostname", "uuid", "version", "message", "received_at")
    list_filter = ("kind",)
    search_fields = ("uuid", "hostname", "message")
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(RejectedPayload)
class RejectedPayloadAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "source", "filename", "reason")
    list_filter = ("source",)
    search_fields = ("filename", "reason")
    date_hierarchy = "received_at"
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("raw")
