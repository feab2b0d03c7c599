from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin import AccountDataAdmin
from accounts.models import Subscription
from accounts.permissions import can_apply_now, can_edit_any, can_map_licenses
from instances.services.licenses import license_map
from instances.services.tokens import ingest_token_create, ingest_token_revoke

from .labels import label_change_apply, label_change_request
from .models import (
    AppliedVia,
    HealthInclusion,
    IngestToken,
    Instance,
    InstanceType,
    LabelChange,
    LabelChangeStatus,
    License,
    LicenseMappingChange,
    MappingSource,
    MonthlyUsage,
    PingReport,
    RejectedPayload,
    TokenScope,
    UsagePing,
    default_token_scopes,
    edition_label,
    edition_title,
)


def _short_time(moment) -> str:
    return f"{timezone.localtime(moment):%-d %b %Y %H:%M %Z}" if moment else "—"


def _edition(obj) -> str:
    if not obj.edition:
        return "—"
    return format_html(
        '<span title="{}">{}</span>', edition_title(obj.edition), edition_label(obj.edition)
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """For audit data: visible to ops, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MapLicenseActionForm(ActionForm):
    subscription = forms.CharField(
        required=False,
        label="Subscription",
        help_text="for “Map to subscription”, e.g. A-S00012345",
    )


class MappingChangeInline(admin.TabularInline):
    """The license's mapping history, newest first: read only, written by the mapping service."""

    model = LicenseMappingChange
    fk_name = "license"
    extra = 0
    fields = ("changed_at", "from_name", "to_name", "via", "changed_by")
    readonly_fields = fields
    can_delete = False
    verbose_name = "mapping change"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("changed_by")


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    """Mappings change only through ``license_map`` so waiting pings attach and it is recorded."""

    list_display = ("__str__", "md5", "sha256", "subscription_name", "subscription", "mapped_via")
    list_filter = ("mapped_via", ("subscription", admin.EmptyFieldListFilter))
    search_fields = ("md5", "sha256", "subscription_name", "subscription__name")
    list_select_related = ("subscription",)
    raw_id_fields = ("mapped_by",)
    readonly_fields = (
        "subscription",
        "mapped_via",
        "mapped_by",
        "mapped_at",
        "first_seen_at",
        "last_seen_at",
    )
    show_full_result_count = False
    inlines = [MappingChangeInline]
    action_form = MapLicenseActionForm
    actions = ["map_to_subscription"]

    @admin.action(description="Map to subscription (attaches waiting pings)", permissions=["map"])
    def map_to_subscription(self, request, queryset):
        name = request.POST.get("subscription", "").strip()
        subscription = Subscription.objects.filter(name=name).first()
        if subscription is None:
            self.message_user(
                request, f"No subscription named {name!r}: nothing mapped.", messages.ERROR
            )
            return
        attached = sum(
            license_map(
                license=lic, subscription=subscription, by=request.user, via=MappingSource.MANUAL
            )
            for lic in queryset
        )
        self.message_user(
            request,
            f"Mapped {queryset.count()} license(s) to {subscription.name}; "
            f"{attached} waiting ping(s) attached.",
        )

    def has_map_permission(self, request):
        return can_map_licenses(request.user)


def _relabel_action(value: str, label: str):
    """The admin action that requests ``instance_type = value`` for the selected instances."""

    @admin.action(description=f"Set instance type: {label}", permissions=["label"])
    def action(modeladmin, request, queryset):
        modeladmin._relabel(request, queryset, value)

    action.__name__ = f"set_{value}"
    return action


@admin.register(Instance)
class InstanceAdmin(AccountDataAdmin):
    # Five columns fit a laptop screen; kind, subscription and the identity are on the
    # instance's page (and kind is a filter).
    list_display = ("__str__", "company", "labels", "release", "last_ping")
    list_filter = ("kind", "instance_type", "health_inclusion", "company__segment")
    search_fields = ("hostname", "uuid", "namespace_path", "=namespace_id", "company__name")
    list_select_related = ("company", "subscription")
    # Labels change only through the audited, delayed label-change path (the actions below);
    # the mapping only through pings and license mappings, which move history with it.
    readonly_fields = (
        "company",
        "subscription",
        "license",
        "instance_type",
        "health_inclusion",
        "labeled_by_person",
        "first_ping_at",
        "last_ping_at",
        "created_at",
        "edition_name",
    )
    # The edition comes from pings: shown by name, never typed in.
    exclude = ("edition",)
    show_full_result_count = False
    # One "Set instance type: …" action per type, named set_<value>.
    actions = [*(_relabel_action(value, label) for value, label in InstanceType.choices)]
    actions.append("apply_pending_now")

    @admin.display(description="Type", ordering="instance_type")
    def labels(self, obj):
        # The health inclusion only when a person set it: "Automatic" on every row is noise.
        if obj.health_inclusion == HealthInclusion.AUTOMATIC:
            return obj.get_instance_type_display()
        return format_html(
            "{}<br><small>{}</small>",
            obj.get_instance_type_display(),
            f"Health measure: {obj.get_health_inclusion_display()}",
        )

    @admin.display(description="Last ping", ordering="last_ping_at")
    def last_ping(self, obj):
        if obj.last_ping_at is None:
            return "never"
        moment = timezone.localtime(obj.last_ping_at)
        return format_html(
            '<span title="{}">{}</span>', f"{moment:%Y-%m-%d %H:%M %Z}", f"{moment:%-d %b %Y}"
        )

    @admin.display(description="Version", ordering="version_sort")
    def release(self, obj):
        if not obj.edition:
            return obj.version or "—"
        return format_html("{}<br>{}", obj.version or "—", _edition(obj))

    @admin.display(description="Edition")
    def edition_name(self, obj):
        return _edition(obj)

    def _relabel(self, request, queryset, value: str) -> None:
        changes = [
            label_change_request(instance=inst, field="instance_type", value=value, by=request.user)
            for inst in queryset
        ]
        pending = [c for c in changes if c is not None and c.is_pending]
        when = min((c.effective_at for c in pending), default=None)
        self.message_user(
            request,
            f"{len(pending)} pending label change(s) recorded"
            + (f"; reflected in reports from {_short_time(when)}." if when else "."),
        )

    @admin.action(description="Apply their pending label changes now", permissions=["apply_now"])
    def apply_pending_now(self, request, queryset):
        ids = (
            LabelChange.objects.pending().filter(instance__in=queryset).values_list("id", flat=True)
        )
        applied = sum(
            label_change_apply(change_id=i, via=AppliedVia.APPLY_NOW, by=request.user, force=True)
            for i in ids
        )
        self.message_user(request, f"Applied {applied} pending label change(s) now.")

    def has_label_permission(self, request):
        return can_edit_any(request.user)

    def has_apply_now_permission(self, request):
        return can_apply_now(request.user)


@admin.register(UsagePing)
class UsagePingAdmin(ReadOnlyAdmin):
    list_display = ("instance", "recorded_at", "version", "source", "billable_users", "mapped")
    list_filter = ("source", ("subscription", admin.EmptyFieldListFilter))
    search_fields = ("instance__hostname", "instance__uuid", "license_md5", "license_sha256")
    list_select_related = ("instance",)
    raw_id_fields = ("instance", "license", "subscription")
    date_hierarchy = "recorded_at"
    show_full_result_count = False

    exclude = ("edition",)
    readonly_fields = ("edition_name",)

    def get_queryset(self, request):
        # The compressed payload is tens of kB a row: never load it for a list.
        return super().get_queryset(request).defer("raw_payload")

    @admin.display(description="Edition")
    def edition_name(self, obj):
        return _edition(obj)

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
    list_display = ("instance", "change", "author", "requested", "outcome")
    list_filter = ("status", "field")
    search_fields = ("instance__hostname", "instance__uuid", "author")
    list_select_related = ("instance", "applied_by")
    raw_id_fields = ("instance", "requested_by", "applied_by", "superseded_by")
    date_hierarchy = "requested_at"
    show_full_result_count = False
    actions = ["apply_now"]

    @admin.display(description="Requested", ordering="requested_at")
    def requested(self, obj):
        return _short_time(obj.requested_at)

    @admin.display(description="Status", ordering="status")
    def outcome(self, obj):
        """ "Pending until …", "Applied … (applied now by ops)", "Superseded …"."""
        if obj.is_pending:
            return f"Pending until {_short_time(obj.effective_at)}"
        if obj.status == LabelChangeStatus.APPLIED:
            how = obj.get_applied_via_display()
            by = f" by {obj.applied_by.username}" if obj.applied_by_id else ""
            return f"Applied {_short_time(obj.applied_at)}" + (f" ({how}{by})" if how else "")
        when = f" {_short_time(obj.closed_at)}" if obj.closed_at else ""
        return f"{obj.get_status_display()}{when}"

    @admin.display(description="Change", ordering="field")
    def change(self, obj):
        return format_html(
            "{}:<br>{} → {}",
            obj.get_field_display(),
            obj.value_display(obj.old_value),
            obj.value_display(obj.new_value),
        )

    @admin.action(description="Apply selected pending changes now", permissions=["apply_now"])
    def apply_now(self, request, queryset):
        applied = sum(
            label_change_apply(
                change_id=c.id, via=AppliedVia.APPLY_NOW, by=request.user, force=True
            )
            for c in queryset.filter(status="pending")
        )
        self.message_user(request, f"Applied {applied} pending label change(s) now.")

    def has_apply_now_permission(self, request):
        return can_apply_now(request.user)


@admin.register(LicenseMappingChange)
class LicenseMappingChangeAdmin(ReadOnlyAdmin):
    """The audit of license mappings: every change, by whom and how. Nobody edits it."""

    list_display = ("changed_at", "license", "from_name", "to_name", "via", "changed_by")
    list_filter = ("via",)
    search_fields = ("license__md5", "license__sha256", "from_name", "to_name")
    list_select_related = ("license", "license__subscription", "changed_by")
    date_hierarchy = "changed_at"
    show_full_result_count = False


class IngestTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        initial=default_token_scopes,
        widget=forms.CheckboxSelectMultiple,
        help_text="A GitLab instance needs ingest only; a reader of the health API, read.",
    )

    class Meta:
        model = IngestToken
        fields = ["name", "scopes", "expires_at"]


@admin.register(IngestToken)
class IngestTokenAdmin(admin.ModelAdmin):
    """Tokens for the ping endpoints and the health API: the secret is shown once, on creation;
    only its hash is stored. Scopes and expiry are chosen at creation. A token is revoked (one
    way, audited), never deleted or un-revoked, so the audit of who sent what stays readable
    and a leaked secret stays dead."""

    form = IngestTokenForm
    list_display = (
        "name",
        "prefix",
        "scope_list",
        "state",
        "created_by",
        "created_at",
        "last_used_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        # Scopes are chosen on creation only: the change form has no scopes field to submit.
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes", "expires_at")
        return (
            "name",
            "prefix",
            "scope_list",
            "expires_at",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "prefix",
            "scope_list",
            "expires_at",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    @admin.display(description="Scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="State")
    def state(self, obj):
        if obj.revoked_at is not None:
            return f"Revoked {_short_time(obj.revoked_at)}"
        if obj.is_expired:
            return f"Expired {_short_time(obj.expires_at)}"
        return f"Active until {_short_time(obj.expires_at)}" if obj.expires_at else "Active"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        token, secret = ingest_token_create(
            name=obj.name,
            by=request.user,
            scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        messages.warning(
            request,
            format_html("Copy this token now, it will not be shown again: <code>{}</code>", secret),
        )

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected tokens (for good)", permissions=["change"])
    def revoke(self, request, queryset):
        count = sum(ingest_token_revoke(token=t, by=request.user) for t in queryset)
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
