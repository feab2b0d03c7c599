import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.html import format_html

from accounts.changes import companies_changed
from accounts.models import (
    AuditEvent,
    Company,
    Meeting,
    Subscription,
    SupportTicketMonth,
    TableColumns,
)
from accounts.services import (
    SubscriptionInUse,
    company_dependents,
    subscription_delete,
    subscription_dependents,
)
from instances.services.licenses import subscription_attach_waiting
from scoring.services import companies_refresh


class AccountDataAdmin(admin.ModelAdmin):
    """For rows an account's pages show (its instances, its subscriptions): an edit is announced
    as a change of the account's data (pages only), a delete also rescores the account."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        companies_changed([obj.company_id], reason="edited in the admin", refresh=False)

    def delete_model(self, request, obj):
        company_id = obj.company_id
        super().delete_model(request, obj)
        companies_changed([company_id], reason="deleted in the admin")

    def delete_queryset(self, request, queryset):
        company_ids = set(queryset.values_list("company_id", flat=True))
        super().delete_queryset(request, queryset)
        companies_changed(company_ids, reason="deleted in the admin")


class SubscriptionInline(admin.TabularInline):
    """Shown for reference; edits go through the subscription's own page, which rescores."""

    model = Subscription
    extra = 0
    fields = ("name", "plan", "licensed_seats", "start_date", "end_date", "status", "deployment")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class RefuseInUseDelete:
    """A record other rows would silently lose their link to (SET_NULL) cannot be deleted: its
    delete page names what depends on it, as "protected", and has no confirm button. One at a
    time: the bulk action's page could not say which record holds what."""

    delete_confirmation_template = "admin/accounts/in_use_delete_confirmation.html"

    def dependents(self, obj) -> list[str]:
        raise NotImplementedError

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        in_use = [line for obj in objs for line in self.dependents(obj)]
        if in_use:  # refused either way: say why in the portal's terms, not the permissions'
            return deleted, counts, set(), [*protected, *in_use]
        return deleted, counts, perms_needed, protected


@admin.register(Company)
class CompanyAdmin(RefuseInUseDelete, admin.ModelAdmin):
    list_display = ("name", "crm_account_id", "segment", "csm", "customer_since", "sentiment")
    list_filter = ("segment", "sentiment", "csm")
    search_fields = ("name", "crm_account_id")
    list_select_related = ("csm",)
    raw_id_fields = ("parent", "csm")
    # Sentiment is set on the account's Summary page, where it is recorded and rescored.
    readonly_fields = (
        "sentiment",
        "sentiment_note",
        "sentiment_by",
        "sentiment_at",
        "roi_at",
        "created_at",
        "updated_at",
    )
    show_full_result_count = False
    inlines = [SubscriptionInline]
    actions = ["recompute_scores"]
    # Its subscriptions go with it, and instances point at both with SET_NULL: a company that
    # anything would be unmapped from is refused, as a subscription is (one at a time).

    def dependents(self, obj) -> list[str]:
        return company_dependents(obj)

    def save_model(self, request, obj, form, change):
        if "roi" in form.changed_data or "roi_note" in form.changed_data:
            obj.roi_at = timezone.now()
        super().save_model(request, obj, form, change)
        # Its CSM, segment, age, ROI and prioritization all feed the current score.
        companies_changed([obj.pk], since=None, reason="account edited in the admin")

    @admin.action(description="Recompute scores of the selected companies")
    def recompute_scores(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        written = companies_refresh(company_ids=ids, reason="admin")
        self.message_user(request, f"Recomputed {len(ids)} companies ({written} new snapshot(s)).")


@admin.register(Subscription)
class SubscriptionAdmin(RefuseInUseDelete, AccountDataAdmin):
    list_display = ("name", "company", "plan", "licensed_seats", "deployment", "status", "end_date")
    list_filter = ("plan", "deployment", "status")
    search_fields = ("name", "company__name", "company__crm_account_id")
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        # Moving a subscription between accounts moves instances and history: use import_crm.
        return ("company",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        admin.ModelAdmin.save_model(self, request, obj, form, change)
        if not change:
            subscription_attach_waiting(subscription=obj)
        # Seats and plan feed License Utilization and DevSecOps: rescore the account.
        companies_changed([obj.company_id], reason="subscription edited")

    # Deleting: instances, licenses and pings point at a subscription with SET_NULL, so a
    # delete would unmap them without a word. A subscription anything is mapped to is refused
    # (its delete page names what, as "protected"); any other delete is audited. One at a time:
    # the bulk action's page could not say which subscription holds what.

    def dependents(self, obj) -> list[str]:
        return subscription_dependents(obj)

    def delete_model(self, request, obj):
        try:
            subscription_delete(subscription=obj, by=request.user)
        except SubscriptionInUse as exc:  # mapped between the confirmation page and the POST
            raise PermissionDenied(str(exc)) from None

    def delete_queryset(self, request, queryset):
        for sub in queryset:
            self.delete_model(request, sub)


class ScoredAccountDataAdmin(AccountDataAdmin):
    """Rows the current score reads (tickets, meetings): an edit rescores the account."""

    def save_model(self, request, obj, form, change):
        admin.ModelAdmin.save_model(self, request, obj, form, change)
        companies_changed([obj.company_id], since=None, reason="edited in the admin")


@admin.register(SupportTicketMonth)
class SupportTicketMonthAdmin(ScoredAccountDataAdmin):
    list_display = ("company", "month", "tickets")
    search_fields = ("company__name", "company__crm_account_id")
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    date_hierarchy = "month"


@admin.register(Meeting)
class MeetingAdmin(ScoredAccountDataAdmin):
    list_display = ("company", "day", "personas")
    search_fields = ("company__name", "company__crm_account_id", "personas")
    list_select_related = ("company",)
    raw_id_fields = ("company",)
    date_hierarchy = "day"


@admin.register(TableColumns)
class TableColumnsAdmin(admin.ModelAdmin):
    """People's column choices: read to answer "why do I not see that column?", or deleted to
    give someone the defaults back."""

    list_display = ("user", "table", "updated_at")
    list_filter = ("table",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("updated_at",)
    show_full_result_count = False


class AuditActorFilter(admin.SimpleListFilter):
    """By who acted: a person's username, or what acted for nobody (import_crm, worker, …)."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request, model_admin):
        labels = AuditEvent.objects.order_by("actor_label").values_list("actor_label", flat=True)
        return [(label, label) for label in labels.distinct()]

    def queryset(self, request, queryset):
        return queryset.filter(actor_label=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, for ops to read: nobody adds, edits or deletes an event here (the model
    and, on PostgreSQL, the database refuse it too)."""

    list_display = ("at", "actor_label", "action", "target_type", "target_repr")
    list_filter = ("action", AuditActorFilter, "at", "target_type")
    search_fields = ("actor_label", "target_repr", "=target_id", "target_type")
    date_hierarchy = "at"
    fields = (
        "at",
        "actor",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "details",
    )
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="Detail")
    def details(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.detail, indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
