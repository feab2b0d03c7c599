"""Companies (accounts), their subscriptions, and the CSMs who own them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .querysets import CompanyQuerySet, SubscriptionQuerySet
from .zones import MAX_NAME_LENGTH, zone_named


class Segment(models.TextChoices):
    STRATEGIC = "Strategic"
    GROWTH = "Growth"
    SCALE = "Scale"
    DIGITAL = "Digital"


CSM_OWNED_SEGMENTS = (Segment.STRATEGIC, Segment.GROWTH)


def csm_owned_q(prefix: str = "") -> Q:
    """The CSM-owned accounts: Strategic or Growth with a CSM (``prefix``: ``"company__"``).

    The one statement of the rule: sentiment counts only on these accounts, health-drop alerts
    are raised only for them, and their Unknown instances are labeled by hand.
    """
    return Q(**{f"{prefix}segment__in": CSM_OWNED_SEGMENTS, f"{prefix}csm__isnull": False})


def is_csm_owned(*, segment: str, csm_id: int | None) -> bool:
    """``csm_owned_q`` for one account's values."""
    return segment in CSM_OWNED_SEGMENTS and csm_id is not None


class Sentiment(models.TextChoices):
    RED = "Red"
    YELLOW = "Yellow"
    GREEN = "Green"


class Plan(models.TextChoices):
    FREE = "free", "Free"
    STARTER = "starter", "Starter"
    PREMIUM = "premium", "Premium"
    ULTIMATE = "ultimate", "Ultimate"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Deployment(models.TextChoices):
    SELF_MANAGED = "self-managed", "Self-managed"
    SAAS = "saas", "SaaS"


def _choices_check(field: str, choices: type[models.TextChoices], *, blank: bool = False) -> Q:
    allowed = Q(**{f"{field}__in": choices.values})
    return allowed | Q(**{field: ""}) if blank else allowed


#: A measure's colour as ``Company.listing_*_rank``: Red, Yellow, Green, then NA (also no
#: scorecard at all), the order a colour sorts in.
LISTING_RANKS = ("Red", "Yellow", "Green", "NA")
LISTING_NA_RANK = 3


def _listing_rank() -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(default=LISTING_NA_RANK, editable=False)


#: The listing's sort keys, each sorted with the primary key last so that every order is total:
#: a colour (then the name), a figure that is never missing, and a figure that may be (sorted
#: last in both directions, so it needs an index per direction).
LISTING_RANKED = ("ue", "scm", "ci", "cd", "devsecops", "overall")
LISTING_COUNTS = ("production", "non_production", "unknown", "other")
LISTING_NULLABLE = {
    "lu": "listing_license_utilization",
    "usage": "listing_product_usage",
    "seats": "listing_licensed_seats",
    "billable": "listing_billable_users",
    "last_ping": "listing_last_ping_at",
}


def _listing_indexes() -> list[models.Index]:
    """One index per sort order of the dashboard, each scanned forwards for its order and
    backwards for the reverse (the last pages: ``kit.tables.TwoStepPaginator``)."""
    indexes = [
        models.Index(fields=["name", "id"], name="company_by_name"),
        models.Index(fields=["segment", "name", "id"], name="company_by_segment"),
        # The CSM sort reads one owner's accounts at a time (``kit.tables.grouped_page_keys``).
        models.Index(fields=["csm", "id"], name="company_by_csm"),
    ]
    indexes += [
        models.Index(fields=[f"listing_{m}_rank", "name", "id"], name=f"company_by_{m}")
        for m in LISTING_RANKED
    ]
    indexes += [
        models.Index(fields=[f"listing_{n}", "id"], name=f"company_by_{n}") for n in LISTING_COUNTS
    ]
    for short, field in LISTING_NULLABLE.items():
        indexes.append(models.Index(fields=[field, "id"], name=f"company_by_{short}"))
        indexes.append(
            DescNullsLastIndex(
                models.F(field).desc(nulls_last=True),
                models.F("id"),
                name=f"company_by_{short}_desc",
            )
        )
    return indexes


class DescNullsLastIndex(models.Index):
    """An index whose ``DESC NULLS LAST`` keys say so on PostgreSQL and stay plain ``DESC``
    elsewhere: SQLite refuses the clause in an index, and puts NULLs last in a descending one
    anyway (it holds NULL smaller than any value)."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        index = self
        if schema_editor.connection.vendor != "postgresql":
            index = self.clone()
            index.expressions = tuple(
                models.OrderBy(e.expression, descending=e.descending)
                if isinstance(e, models.OrderBy)
                else e
                for e in self.expressions
            )
        return models.Index.create_sql(index, model, schema_editor, using, **kwargs)


class Company(models.Model):
    """A customer account (Gainsight "Company", Salesforce "Account")."""

    name = models.CharField(max_length=255)  # indexed with the id: ``company_by_name``
    crm_account_id = models.CharField("CRM account id", max_length=64, unique=True)
    csm = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name="CSM",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_companies",
    )
    segment = models.CharField(max_length=16, choices=Segment.choices)
    customer_since = models.DateField(null=True, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    sentiment = models.CharField(
        "CSM sentiment", max_length=8, choices=Sentiment.choices, blank=True
    )
    sentiment_note = models.TextField(blank=True)
    sentiment_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    sentiment_at = models.DateTimeField(null=True, blank=True)
    # Outcomes: the success plan's ROI as the CSM judges it (Red, Yellow, Green).
    roi = models.CharField("success-plan ROI", max_length=8, choices=Sentiment.choices, blank=True)
    roi_note = models.TextField("ROI note", blank=True)
    roi_at = models.DateTimeField(null=True, blank=True)
    prioritization = models.PositiveSmallIntegerField(
        "CSM prioritization",
        null=True,
        blank=True,
        help_text="1 or 2 set a meeting cadence (Engagement); others have none",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The account or its data last changed (``CompanyQuerySet.touch``): the cache version.
    updated_at = models.DateTimeField(auto_now=True)

    # The account's listing: its current scorecard's figures and its instances, kept on the
    # account so that the dashboard sorts and filters every account on an index (one per sort
    # order, below) instead of joining scorecards and counting instances per row. Derived data:
    # ``scoring.listing.listings_refresh`` is their one writer, run with every snapshot write.
    listing_license_utilization = models.FloatField(null=True, editable=False)
    listing_product_usage = models.FloatField(null=True, editable=False)
    listing_licensed_seats = models.BigIntegerField(null=True, editable=False)
    listing_billable_users = models.BigIntegerField(null=True, editable=False)
    listing_lu_rank = _listing_rank()
    listing_ue_rank = _listing_rank()
    listing_scm_rank = _listing_rank()
    listing_ci_rank = _listing_rank()
    listing_cd_rank = _listing_rank()
    listing_devsecops_rank = _listing_rank()
    listing_product_usage_rank = _listing_rank()
    listing_overall_rank = _listing_rank()
    listing_production = models.PositiveIntegerField(default=0, editable=False)
    listing_non_production = models.PositiveIntegerField(default=0, editable=False)
    listing_unknown = models.PositiveIntegerField(default=0, editable=False)
    listing_other = models.PositiveIntegerField(default=0, editable=False)
    listing_last_ping_at = models.DateTimeField(null=True, editable=False)

    objects = CompanyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]
        permissions = [
            ("set_sentiment", "Can set CSM sentiment on owned accounts"),
            ("edit_any_account", "Can label and set sentiment on every account"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=_choices_check("segment", Segment), name="company_segment_valid"
            ),
            models.CheckConstraint(
                condition=_choices_check("sentiment", Sentiment, blank=True),
                name="company_sentiment_valid",
            ),
            models.CheckConstraint(
                condition=~Q(parent=models.F("id")), name="company_not_own_parent"
            ),
            models.CheckConstraint(
                condition=_choices_check("roi", Sentiment, blank=True), name="company_roi_valid"
            ),
        ]
        indexes = [models.Index(fields=["csm", "segment"]), *_listing_indexes()]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # The listing has one writer (``scoring.listing``): saving an account loaded a moment
        # ago (the admin, an import) must not write back the listing it loaded, which a
        # scoring run may have moved since.
        loaded = not self._state.adding and not kwargs.get("force_insert")
        if loaded and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and not f.name.startswith("listing_")
            ]
        super().save(*args, **kwargs)


class Subscription(models.Model):
    """A Zuora-style subscription (e.g. ``A-S00012345``) that licenses seats to a company."""

    name = models.CharField(max_length=64, unique=True)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.CharField(max_length=16, choices=Plan.choices)
    licensed_seats = models.PositiveIntegerField()
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    deployment = models.CharField(max_length=16, choices=Deployment.choices)
    arr = models.DecimalField("ARR", max_digits=14, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=_choices_check("plan", Plan), name="sub_plan_valid"),
            models.CheckConstraint(
                condition=_choices_check("status", SubscriptionStatus), name="sub_status_valid"
            ),
            models.CheckConstraint(
                condition=_choices_check("deployment", Deployment), name="sub_deployment_valid"
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True)
                | Q(start_date__isnull=True)
                | Q(end_date__gte=models.F("start_date")),
                name="sub_dates_ordered",
            ),
            models.CheckConstraint(
                condition=Q(arr__isnull=True) | Q(arr__gte=0), name="sub_arr_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_plan_display()}, {self.licensed_seats} seats)"


class SupportTicketMonth(models.Model):
    """Support tickets an account opened in a calendar month (Voice of the customer)."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="ticket_months")
    month = models.DateField(help_text="First day of the calendar month")
    tickets = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["company", "month"], name="one_ticket_count_a_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="tickets_first_of_month"),
        ]

    def __str__(self) -> str:
        return f"{self.company_id} {self.month:%Y-%m}: {self.tickets}"


class Meeting(models.Model):
    """A meeting with the account, and which personas were there (Engagement)."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="meetings")
    day = models.DateField()
    personas = models.CharField(
        max_length=255, blank=True, help_text="Comma-separated, e.g. Dev Lead, Security Lead"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["company", "day"], name="one_meeting_a_day")]

    def __str__(self) -> str:
        return f"{self.company_id} {self.day}: {self.personas}"

    @property
    def persona_set(self) -> frozenset[str]:
        return persona_names(self.personas)


def persona_names(text: str) -> frozenset[str]:
    """The personas a meeting's comma-separated list names, trimmed."""
    return frozenset(p.strip() for p in text.split(",") if p.strip())


class TableColumns(models.Model):
    """The columns a person chose for a list page's table (the dashboard's column chooser).

    One row per person and table, read in one query by the page; no row means the table's
    default columns. ``columns`` holds column names in the table's order.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="table_columns"
    )
    table = models.CharField(max_length=64, help_text="The list page, e.g. dashboard")
    columns = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "chosen table columns"
        verbose_name_plural = "chosen table columns"
        constraints = [
            models.UniqueConstraint(fields=["user", "table"], name="one_column_choice_per_table")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.table}: {', '.join(self.columns)}"

    @classmethod
    def chosen(cls, *, user, table: str) -> list[str] | None:
        """The columns ``user`` chose for ``table``, or ``None`` when they chose none."""
        if not getattr(user, "is_authenticated", False):
            return None
        row = cls.objects.filter(user=user, table=table).values_list("columns", flat=True)
        return next(iter(row), None)

    @classmethod
    def remember(cls, *, user, table: str, columns: list[str] | None) -> None:
        """Store ``user``'s choice for ``table``; ``None`` goes back to the default columns."""
        if columns is None:
            cls.objects.filter(user=user, table=table).delete()
            return
        cls.objects.update_or_create(user=user, table=table, defaults={"columns": list(columns)})


class ImmutableRecord(Exception):
    """A write that would edit or delete a record kept as evidence (the audit trail, a revoked
    or any ingest token). Raised before the database is touched."""


class AuditAction(models.TextChoices):
    LABEL_REQUESTED = "label_requested", "Label change requested"
    LABEL_CANCELLED = "label_cancelled", "Label change cancelled"
    LABEL_APPLIED = "label_applied", "Label change applied"
    LABEL_APPLIED_NOW = "label_applied_now", "Label change applied now"
    SENTIMENT_SET = "sentiment_set", "Sentiment set"
    ROI_SET = "roi_set", "Success-plan ROI set"
    LICENSE_MAPPED = "license_mapped", "License mapping changed"
    CRM_IMPORT_CHANGED = "crm_import_changed", "Changed by CRM import"
    TOKEN_CREATED = "token_created", "Ingest token created"
    TOKEN_REVOKED = "token_revoked", "Ingest token revoked"
    SUBSCRIPTION_DELETED = "subscription_deleted", "Subscription deleted"
    SCHEME_SWITCHED = "scheme_switched", "Scoring scheme switched"


class AuditEventQuerySet(models.QuerySet):
    """Rows are only ever added: a bulk edit or delete is refused (``bulk_update`` goes through
    ``update`` too). PostgreSQL refuses them as well, by trigger, for writes that bypass this."""

    def update(self, **kwargs):
        raise ImmutableRecord("audit events are append-only: they are never updated")

    def delete(self):
        raise ImmutableRecord("audit events are append-only: they are never deleted")

    def _raw_delete(self, using):
        raise ImmutableRecord("audit events are append-only: they are never deleted")


class AuditEvent(models.Model):
    """One entry of the append-only audit trail: who did what to which record, and when.

    Written by ``accounts.audit.audit_record`` alone, in the transaction of the write it
    records (a write that rolls back leaves no event). The target is named, not linked: the
    event still reads after its record is deleted. ``actor`` is the person; a write made by
    no person (an import, the worker, a labeling rule) has none and says what made it in
    ``actor_label``, which holds the username otherwise.
    """

    at = models.DateTimeField("when", default=timezone.now, db_index=True)
    # PROTECT: a person who is in the trail is deactivated, not deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_label = models.CharField(
        "actor", max_length=150, help_text="The username, or what acted: import_crm, worker, …"
    )
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    target_type = models.CharField(
        max_length=100, help_text="app_label.model, e.g. instances.instance"
    )
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField("target", max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        # Deletes cascading from elsewhere meet the refusing queryset too.
        base_manager_name = "objects"
        constraints = [
            models.CheckConstraint(
                condition=_choices_check("action", AuditAction), name="audit_action_valid"
            ),
            models.CheckConstraint(condition=~Q(actor_label=""), name="audit_actor_named"),
        ]
        indexes = [
            models.Index(fields=["action", "-at"], name="audit_action_recent"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        what = f"{self.get_action_display()} {self.target_repr}"
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label}: {what}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRecord("audit events are append-only: they are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecord("audit events are append-only: they are never deleted")


def time_zone_validate(value: str) -> None:
    """A chosen zone must be one the portal knows (``accounts.zones``); blank is "not chosen"."""
    if value and zone_named(value) is None:
        raise ValidationError(
            "“%(value)s” is not a time zone the portal knows.", params={"value": value}
        )


class UserPreferences(models.Model):
    """A person's own settings for how pages read, edited on their profile page.

    One row per person, made when they first save; no row, or a blank ``time_zone``, means
    they chose none (pages then use their browser's zone). Times are stored in UTC whatever
    is chosen here.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences"
    )
    time_zone = models.CharField(
        max_length=MAX_NAME_LENGTH,
        blank=True,
        validators=[time_zone_validate],
        help_text="An IANA zone such as Europe/Berlin; blank: the browser's zone.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "user preferences"
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"{self.user_id}: {self.time_zone or 'browser zone'}"

    @classmethod
    def time_zone_of(cls, user) -> str:
        """The zone ``user`` chose, or "" when they chose none (or it is no longer known)."""
        if not getattr(user, "is_authenticated", False):
            return ""
        name = next(iter(cls.objects.filter(user=user).values_list("time_zone", flat=True)), "")
        return name if zone_named(name) is not None else ""

    @classmethod
    def time_zone_remember(cls, *, user, time_zone: str) -> None:
        """Keep ``user``'s choice; "" goes back to their browser's zone."""
        time_zone_validate(time_zone)
        cls.objects.update_or_create(user=user, defaults={"time_zone": time_zone})
