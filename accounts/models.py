"""Companies (accounts), their subscriptions, and the CSMs who own them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from .querysets import CompanyQuerySet, SubscriptionQuerySet


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


class Company(models.Model):
    """A customer account (Gainsight "Company", Salesforce "Account")."""

    name = models.CharField(max_length=255, db_index=True)
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
        indexes = [models.Index(fields=["csm", "segment"])]

    def __str__(self) -> str:
        return self.name


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
