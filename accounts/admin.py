from django.contrib import admin
from django.utils import timezone

from accounts.changes import companies_changed
from accounts.models import Company, Meeting, Subscription, SupportTicketMonth, TableColumns
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


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
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
class SubscriptionAdmin(AccountDataAdmin):
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
