"""Instances and SaaS namespaces, the pings they send, license identities and label changes."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Company, ImmutableRecord, Subscription

from .metrics import FAILED_FIELD, METRICS
from .querysets import InstanceQuerySet, LabelChangeQuerySet, UsagePingQuerySet


class InstanceKind(models.TextChoices):
    SELF_MANAGED = "self-managed", "Self-managed"
    SAAS = "saas", "SaaS namespace"


class InstanceType(models.TextChoices):
    PRODUCTION = "production", "Production"
    NON_PRODUCTION = "non_production", "Non-Production"
    OBSOLETE = "obsolete", "Obsolete"
    UNKNOWN = "unknown", "Unknown"
    GEO_SECONDARY = "geo_secondary", "Geo Secondary Node"


class HealthInclusion(models.TextChoices):
    AUTOMATIC = "", "Automatic"
    INCLUDED = "included", "Included"
    OPT_OUT = "opt_out", "Opt-Out"


class MappingSource(models.TextChoices):
    PING = "ping", "From the ping's subscription id"
    MANUAL = "manual", "By hand"
    IMPORT = "import", "By import"


#: GitLab's ``edition`` codes: (name, what it means). The license tier is in the code.
EDITIONS: dict[str, tuple[str, str]] = {
    "EEU": ("Ultimate", "GitLab Enterprise Edition with an Ultimate license"),
    "EEP": ("Premium", "GitLab Enterprise Edition with a Premium license"),
    "EES": ("Starter", "GitLab Enterprise Edition with a Starter license (a retired tier)"),
    "EE": (
        "Enterprise Edition",
        "GitLab Enterprise Edition with a license that names no Starter, Premium or Ultimate plan",
    ),
    "EE Free": ("Free", "GitLab Enterprise Edition running without a license"),
    "CE": ("Community Edition", "GitLab Community Edition, the open-source build"),
}


def edition_label(code: str) -> str:
    """ "Ultimate (EEU)" for a known code; a code GitLab adds later is shown as sent."""
    known = EDITIONS.get(code)
    return f"{known[0]} ({code})" if known else code


def edition_title(code: str) -> str:
    """What an edition code means, for a tooltip ("" when unknown)."""
    known = EDITIONS.get(code)
    return f"{known[1]} (edition code {code})" if known else ""


class PingSource(models.TextChoices):
    HTTP = "http", "POST /usage_data"
    UPLOAD = "upload", "Manual upload"
    BULK = "bulk", "Bulk load"
    SAAS = "saas", "SaaS export"


class MetricColumns(models.Model):
    """One NULL-able column per metric of ``instances.metrics.METRICS`` (NULL = unknown)."""

    class Meta:
        abstract = True


for _metric in METRICS:
    MetricColumns.add_to_class(
        _metric.name, models.BigIntegerField(null=True, blank=True, help_text=_metric.label)
    )
# db_default too: the bulk loaders' COPY and upserts may leave the column out.
MetricColumns.add_to_class(
    FAILED_FIELD,
    models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="Metrics the instance reported a failure value for (comma-separated)",
    ),
)


def _in(field: str, choices: type[models.TextChoices]) -> Q:
    return Q(**{f"{field}__in": choices.values})


class License(models.Model):
    """A license key as seen in pings, and the subscription it maps to (with provenance)."""

    md5 = models.CharField("license md5", max_length=32, null=True, blank=True, unique=True)
    sha256 = models.CharField("license sha256", max_length=64, null=True, blank=True, unique=True)
    subscription_name = models.CharField(
        "license subscription id", max_length=64, blank=True, db_index=True
    )
    plan = models.CharField(max_length=32, blank=True)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="licenses"
    )
    mapped_via = models.CharField(max_length=8, choices=MappingSource.choices, blank=True)
    mapped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mapped_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("map_license", "Can map a license to a subscription")]
        constraints = [
            models.CheckConstraint(
                condition=Q(md5__isnull=False) | Q(sha256__isnull=False),
                name="license_has_identity",
            ),
            models.CheckConstraint(
                condition=Q(mapped_via__in=[*MappingSource.values, ""]),
                name="license_mapped_via_valid",
            ),
        ]

    def __str__(self) -> str:
        key = self.md5 or self.sha256 or ""
        return f"{key[:12]}… → {self.subscription.name if self.subscription_id else 'unmapped'}"


class LicenseMappingChange(models.Model):
    """The audit of a license's mapping: one row each time its subscription changes.

    Written by ``instances.services.licenses`` alone, the one place mappings change. The names
    are copied so the row still reads after a subscription is deleted.
    """

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="mapping_changes")
    from_subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    to_subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_name = models.CharField("from subscription", max_length=64, blank=True)
    to_name = models.CharField("to subscription", max_length=64, blank=True)
    via = models.CharField(max_length=8, choices=MappingSource.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=_in("via", MappingSource), name="license_mapping_change_via_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["license", "-changed_at"]),
            models.Index(fields=["-changed_at"], name="license_mapping_change_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.license_id}: {self.from_name or '—'} → {self.to_name or '—'}"

    @property
    def from_label(self) -> str:
        """ "A-S00012345 (Cyberdyne)", or "Not mapped" (select the subscription's company)."""
        return _mapping_side(self.from_subscription, self.from_name)

    @property
    def to_label(self) -> str:
        return _mapping_side(self.to_subscription, self.to_name)


def _mapping_side(subscription: Subscription | None, name: str) -> str:
    if subscription is not None:
        return f"{subscription.name} ({subscription.company.name})"
    return f"{name} (since deleted)" if name else "Not mapped"


class Instance(models.Model):
    """A self-managed instance (uuid + hostname) or a SaaS namespace (namespace id)."""

    kind = models.CharField(max_length=16, choices=InstanceKind.choices)
    uuid = models.CharField(max_length=255, null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    namespace_id = models.BigIntegerField(null=True, blank=True, unique=True)
    namespace_path = models.CharField(max_length=255, blank=True)
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    license = models.ForeignKey(
        License, null=True, blank=True, on_delete=models.SET_NULL, related_name="instances"
    )
    version = models.CharField(max_length=64, blank=True)
    version_sort = models.IntegerField(
        null=True, blank=True, help_text="major*1,000,000 + minor*1,000 + patch, for sorting"
    )
    edition = models.CharField(max_length=16, blank=True)
    first_ping_at = models.DateTimeField(null=True, blank=True)
    last_ping_at = models.DateTimeField(null=True, blank=True, db_index=True)
    instance_type = models.CharField(
        max_length=16, choices=InstanceType.choices, default=InstanceType.UNKNOWN
    )
    health_inclusion = models.CharField(
        "included in health measure",
        max_length=8,
        choices=HealthInclusion.choices,
        blank=True,
        default=HealthInclusion.AUTOMATIC,
    )
    labeled_by_person = models.BooleanField(
        default=False, help_text="A person set the type; labeling rules leave it alone."
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        permissions = [("label_instance", "Can label instances on owned accounts")]
        constraints = [
            models.UniqueConstraint(
                fields=["uuid", "hostname"],
                condition=Q(kind="self-managed"),
                name="instance_unique_uuid_hostname",
            ),
            models.CheckConstraint(
                condition=(Q(kind="self-managed") & Q(uuid__isnull=False) & ~Q(uuid=""))
                | (Q(kind="saas") & Q(namespace_id__isnull=False)),
                name="instance_identity_matches_kind",
            ),
            models.CheckConstraint(condition=_in("kind", InstanceKind), name="instance_kind_valid"),
            models.CheckConstraint(
                condition=_in("instance_type", InstanceType), name="instance_type_valid"
            ),
            models.CheckConstraint(
                condition=_in("health_inclusion", HealthInclusion),
                name="instance_health_inclusion_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["company", "instance_type"]),
            models.Index(
                fields=["instance_type", "company"],
                name="instance_unknown_idx",
                condition=Q(instance_type="unknown"),
            ),
        ]

    def __str__(self) -> str:
        if self.kind == InstanceKind.SAAS:
            return self.namespace_path or f"namespace {self.namespace_id}"
        return self.hostname or self.uuid or "instance"

    @property
    def is_saas(self) -> bool:
        return self.kind == InstanceKind.SAAS

    @property
    def identity(self) -> str:
        return f"namespace {self.namespace_id}" if self.is_saas else (self.uuid or "")

    @property
    def edition_name(self) -> str:
        return edition_label(self.edition)

    @property
    def edition_tooltip(self) -> str:
        return edition_title(self.edition)


class UsagePing(MetricColumns):
    """One weekly report from one instance. Metric columns are NULL when unknown, never 0."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="pings")
    recorded_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=8, choices=PingSource.choices)
    version = models.CharField(max_length=64, blank=True)
    edition = models.CharField(max_length=16, blank=True)
    license = models.ForeignKey(
        License, null=True, blank=True, on_delete=models.SET_NULL, related_name="pings"
    )
    subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pings",
        help_text="Empty while the ping's license maps to no subscription (unmapped).",
    )
    license_md5 = models.CharField(max_length=32, blank=True)
    license_sha256 = models.CharField(max_length=64, blank=True)
    license_subscription_id = models.CharField(max_length=64, blank=True)
    license_plan = models.CharField(max_length=32, blank=True)
    license_trial = models.BooleanField(null=True, blank=True)
    raw_payload = models.BinaryField(
        null=True, blank=True, editable=False, help_text="zlib-compressed JSON as received"
    )

    objects = UsagePingQuerySet.as_manager()

    class Meta:
        permissions = [("upload_pings", "Can upload usage ping files")]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "recorded_at"], name="ping_unique_instance_recorded_at"
            ),
            models.CheckConstraint(condition=_in("source", PingSource), name="ping_source_valid"),
        ]
        indexes = [
            models.Index(fields=["instance", "-recorded_at"], name="ping_instance_latest_idx"),
            models.Index(
                fields=["license"], condition=Q(subscription__isnull=True), name="ping_unmapped_idx"
            ),
            # The metrics scrape counts the last day's pings (usage_portal.web.ops.collector):
            # without it, every scrape reads the whole ping table.
            models.Index(fields=["received_at"], name="ping_received_idx"),
        ]
        get_latest_by = "recorded_at"

    def __str__(self) -> str:
        return f"{self.instance} @ {self.recorded_at:%Y-%m-%d}"


class MonthlyUsage(MetricColumns):
    """The last ping of each calendar month per instance (methodology §5), for cheap trends."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="monthly")
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.CASCADE, related_name="monthly_usage"
    )
    month = models.DateField(help_text="First day of the calendar month")
    ping = models.ForeignKey(UsagePing, on_delete=models.CASCADE, related_name="+")
    recorded_at = models.DateTimeField()
    version = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "monthly usage"
        constraints = [
            models.UniqueConstraint(fields=["instance", "month"], name="monthly_unique"),
            models.CheckConstraint(condition=Q(month__day=1), name="monthly_first_of_month"),
        ]
        indexes = [models.Index(fields=["company", "month"])]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.month:%Y-%m}"


class LabelField(models.TextChoices):
    INSTANCE_TYPE = "instance_type", "Instance type"
    HEALTH_INCLUSION = "health_inclusion", "Included in health measure"


class LabelChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    SUPERSEDED = "superseded", "Superseded"
    CANCELLED = "cancelled", "Cancelled"


class AppliedVia(models.TextChoices):
    """How a label change was applied (``instances.labels.label_change_apply``'s ``via``)."""

    APPLY_NOW = "apply_now", "applied now"
    SCHEDULE = "schedule", "applied on schedule"
    SWEEP = "sweep", "applied by the catch-up sweep"
    SEED = "seed", "applied by the demo loader"


class LabelChange(models.Model):
    """The audit trail of every label edit, and the queue that delays it (product.md §4)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="label_changes")
    field = models.CharField(max_length=16, choices=LabelField.choices)
    old_value = models.CharField(max_length=16, blank=True)
    new_value = models.CharField(max_length=16, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author = models.CharField(
        max_length=150, help_text="Username, 'rule: <name>' or 'import: <file>'"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    effective_at = models.DateTimeField()
    status = models.CharField(
        max_length=12, choices=LabelChangeStatus.choices, default=LabelChangeStatus.PENDING
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_via = models.CharField(max_length=16, choices=AppliedVia.choices, blank=True)
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = LabelChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        permissions = [("apply_label_change_now", "Can apply a pending label change at once")]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "field"],
                condition=Q(status="pending"),
                name="label_change_one_pending_per_field",
            ),
            models.CheckConstraint(condition=_in("field", LabelField), name="label_field_valid"),
            models.CheckConstraint(
                condition=_in("status", LabelChangeStatus), name="label_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(effective_at__gte=models.F("requested_at")),
                name="label_effective_after_request",
            ),
            models.CheckConstraint(
                condition=~Q(status="applied") | Q(applied_at__isnull=False),
                name="label_applied_has_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["effective_at"], condition=Q(status="pending"), name="label_due_idx"
            ),
            models.Index(fields=["instance", "-requested_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.instance}: {self.field} {self.old_value or '—'} → {self.new_value or '—'}"

    @property
    def is_pending(self) -> bool:
        return self.status == LabelChangeStatus.PENDING

    def value_display(self, value: str) -> str:
        choices = InstanceType if self.field == LabelField.INSTANCE_TYPE else HealthInclusion
        return dict(choices.choices).get(value, value)


class TokenScope(models.TextChoices):
    """What an ingest token lets its holder do; a token holds one or more."""

    INGEST = "ingest", "Ingest: send pings (POST /usage_data, /usage_ping_errors, …_metadata)"
    READ = "read", "Read: account health (GET /api/v1/accounts/<id>/health)"


def default_token_scopes() -> list[str]:
    """A new token sends pings and reads nothing, unless its creator says otherwise."""
    return [TokenScope.INGEST.value]


class IngestTokenQuerySet(models.QuerySet):
    """Tokens are revoked, never deleted or un-revoked, even in bulk: who sent what stays
    readable, and a leaked secret stays dead."""

    def update(self, **kwargs):
        if "revoked_at" in kwargs and kwargs["revoked_at"] is None:
            raise ImmutableRecord("a revoked ingest token stays revoked: create a new one")
        return super().update(**kwargs)

    def delete(self):
        raise ImmutableRecord("ingest tokens are revoked, never deleted")

    def _raw_delete(self, using):
        raise ImmutableRecord("ingest tokens are revoked, never deleted")


class IngestToken(models.Model):
    """A bearer token for the ping endpoints (scope ``ingest``) and the health API (``read``).

    Only its SHA-256 is stored. Checked in one place, ``instances.services.tokens.
    ingest_token_authenticate``; revocation is one-way and a token is never deleted.
    """

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=12, editable=False, help_text="First characters, to tell tokens apart"
    )
    scopes = models.JSONField(
        default=default_token_scopes, help_text="What the token may do: ingest, read"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Refused from this moment on; empty: never expires"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = IngestTokenQuerySet.as_manager()

    class Meta:
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def save(self, *args, **kwargs):
        if (
            not self._state.adding
            and self.revoked_at is None
            and type(self).objects.filter(pk=self.pk, revoked_at__isnull=False).exists()
        ):
            raise ImmutableRecord("a revoked ingest token stays revoked: create a new one")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecord("ingest tokens are revoked, never deleted")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class PingReportKind(models.TextChoices):
    ERROR = "error", "Error"
    METADATA = "metadata", "Metadata"


class PingReport(models.Model):
    """Errors and metadata GitLab sends beside its pings (``/usage_ping_errors``, ``_metadata``)."""

    Kind = PingReportKind

    kind = models.CharField(max_length=8, choices=Kind.choices)
    uuid = models.CharField(max_length=64, blank=True, db_index=True)
    hostname = models.CharField(max_length=255, blank=True)
    version = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    elapsed = models.FloatField(null=True, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=_in("kind", PingReportKind), name="ping_report_kind_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} from {self.hostname or self.uuid or 'unknown'}"


class RejectedPayload(models.Model):
    """A payload we could not store as a ping, kept with the reason so nothing is lost silently."""

    source = models.CharField(max_length=8, choices=PingSource.choices)
    filename = models.CharField(max_length=255, blank=True)
    reason = models.TextField()
    raw = models.BinaryField(null=True, blank=True, editable=False, help_text="zlib-compressed")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.filename or self.source}: {self.reason[:60]}"
