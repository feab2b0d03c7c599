"""Score snapshots per company, monthly score history, and the active scoring scheme."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Company

from .drops import MEASURE_LABELS

COLORS = ("Red", "Yellow", "Green", "NA")


class ScorecardJSONField(models.JSONField):
    """A JSONField bulk-inserted row by row in SQL.

    On PostgreSQL, Django's bulk_create sends many rows as UNNEST(arrays); psycopg then quotes
    every JSON document into a text array in Python, which made score writes ten times slower.
    Having ``get_placeholder`` opts this field (and so its table's bulk inserts) out of UNNEST.
    """

    def get_placeholder(self, value, compiler, connection):
        return "%s"


def _color_field(label: str) -> models.CharField:
    return models.CharField(label, max_length=6, blank=True, db_index=False)


class ScoringConfig(models.Model):
    """The single row that names the active scheme (changed in the admin, no code change)."""

    scheme = models.CharField(max_length=64)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "scoring configuration"
        permissions = [("download_exports", "Can download health and instance-type exports")]
        constraints = [models.CheckConstraint(condition=Q(id=1), name="scoring_config_singleton")]

    def __str__(self) -> str:
        return f"Active scheme: {self.scheme}"


class SchemeChange(models.Model):
    from_scheme = models.CharField(max_length=64, blank=True)
    to_scheme = models.CharField(max_length=64)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rebuilt_history = models.BooleanField(default=False)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.from_scheme or '—'} → {self.to_scheme} at {self.changed_at:%Y-%m-%d %H:%M}"


class ScoreColumns(models.Model):
    """The headline figures of a scorecard, as columns so lists can filter and sort on them."""

    scheme = models.CharField(max_length=64)
    as_of = models.DateField(null=True, blank=True, help_text="Date of the newest ping used")
    license_utilization = models.FloatField(null=True, blank=True)
    license_utilization_color = _color_field("License Utilization")
    user_engagement_color = _color_field("User Engagement")
    scm_color = _color_field("SCM")
    ci_color = _color_field("CI")
    cd_color = _color_field("CD")
    devsecops_color = _color_field("DevSecOps")
    product_usage_value = models.FloatField(null=True, blank=True)
    product_usage_color = _color_field("Overall product usage")
    overall_color = _color_field("Overall health")
    health_score_value = models.FloatField(null=True, blank=True)
    adoption_count = models.PositiveSmallIntegerField(null=True, blank=True)
    billable_users = models.BigIntegerField(null=True, blank=True)
    licensed_seats = models.BigIntegerField(null=True, blank=True)
    detail = ScorecardJSONField(help_text="The whole scorecard with every input")

    class Meta:
        abstract = True


class ScoreSnapshot(ScoreColumns):
    """A company's scorecard at a point in time; a new one is written when its inputs change."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="score_snapshots")
    computed_at = models.DateTimeField(default=timezone.now)
    inputs_hash = models.CharField(max_length=64)
    is_current = models.BooleanField(default=True)
    reason = models.CharField(max_length=64, blank=True, help_text="What triggered it")

    class Meta:
        get_latest_by = "computed_at"
        constraints = [
            models.UniqueConstraint(
                fields=["company"], condition=Q(is_current=True), name="one_current_snapshot"
            )
        ]
        indexes = [
            models.Index(fields=["company", "-computed_at"]),
            # The Integration API's list pages through current snapshots by (computed_at, id).
            models.Index(
                fields=["computed_at", "id"],
                condition=Q(is_current=True),
                name="current_snapshot_keyset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.company} {self.computed_at:%Y-%m-%d %H:%M} {self.overall_color}"


class MonthlyScore(ScoreColumns):
    """A company's scorecard for one calendar month, from that month's last pings."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="monthly_scores")
    month = models.DateField()
    computed_at = models.DateTimeField(default=timezone.now)
    totals = ScorecardJSONField(
        null=True,
        blank=True,
        help_text="Each metric summed over the instances scored that month (null: not stored "
        "yet; pages then sum the monthly usage rows)",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["company", "month"], name="monthly_score_unique")
        ]

    def __str__(self) -> str:
        return f"{self.company} {self.month:%Y-%m}"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class HealthAlert(models.Model):
    """A health drop on a CSM-owned account (GitLab's "Drop CTA"): one open per measure.

    Raised by the scoring worker in the transaction that stores the score that dropped; a
    further drop updates it, a recovery closes it with the reason, a CSM may close it with a
    note. ``events`` is its audit trail.
    """

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="health_alerts")
    measure = models.CharField(max_length=32)
    status = models.CharField(max_length=8, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    from_color = models.CharField(max_length=8, help_text="The colour it dropped from")
    to_color = models.CharField(max_length=8, help_text="Its colour now (the lowest seen)")
    raised_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    close_reason = models.CharField(max_length=500, blank=True)
    snapshot = models.ForeignKey(
        "ScoreSnapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    digested_on = models.DateField(
        null=True, blank=True, help_text="The day its CSM's digest e-mail named it"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["company", "measure"],
                condition=Q(status="open"),
                name="one_open_alert_per_measure",
            )
        ]
        indexes = [models.Index(fields=["status", "-raised_at"])]

    def __str__(self) -> str:
        return f"{self.company_id} {self.measure} {self.from_color}→{self.to_color}"

    @property
    def measure_label(self) -> str:
        return MEASURE_LABELS.get(self.measure, self.measure)


class HealthAlertEvent(models.Model):
    """The audit trail of an alert: raised, worsened, recovered, closed (by whom, why)."""

    alert = models.ForeignKey(HealthAlert, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16)
    from_color = models.CharField(max_length=8, blank=True)
    to_color = models.CharField(max_length=8, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_color}→{self.to_color} at {self.at:%Y-%m-%d %H:%M}"


class DigestSent(models.Model):
    """One row per CSM and day: the daily drop digest is sent at most once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    alerts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="one_digest_a_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}"


class PendingRefresh(models.Model):
    """An account whose data changed and whose scores have not followed yet.

    The durable half of "data changed → refresh" (``accounts.changes``): written in the writer's
    own transaction, so a committed write always leaves either fresh scores or this row; deleted
    by the refresh that covered it. The task published after the commit is only the fast path:
    when the broker is down, or the worker died, or the database was away longer than the task's
    retries, the beat sweep (``scoring.services.pending_refreshes_drain``) finds the row.
    """

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    #: The first day whose data changed: ``accounts.changes.ALL_HISTORY`` (date.min) for all
    #: of it, None for the current state only (sentiment).
    since = models.DateField(null=True, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["company", "created_at"])]

    def __str__(self) -> str:
        return f"{self.company_id} since {self.since} ({self.reason})"


class JobRun(models.Model):
    """When each periodic job (``CELERY_BEAT_SCHEDULE``) last finished without error.

    Written by the worker when a task beat sent succeeds (``scoring.jobruns``), read by the
    Prometheus endpoint: a job whose time stops moving is a beat, a worker or a job that fails.
    Here rather than in the jobs' own apps: one table for every job, as the schedule is one
    setting; scoring holds the other durable record of background work (``PendingRefresh``).
    """

    name = models.CharField(max_length=100, unique=True, help_text="The beat schedule's entry")
    task = models.CharField(max_length=200)
    last_success_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_success_at:%Y-%m-%d %H:%M}"


class AdminJobKind(models.TextChoices):
    RECOMPUTE_ALL = "recompute_all", "Recompute every company"
    SCHEME_SWITCH = "scheme_switch", "Switch the scoring scheme"


class AdminJobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


#: A job in one of these states holds its target: a second one for the same target is refused.
ADMIN_JOB_ACTIVE = (AdminJobState.QUEUED, AdminJobState.RUNNING)
#: What every recompute-everything job works on: a scheme switch and a full recompute rescore
#: the same rows, so they take turns.
EVERY_COMPANY = "every-company"


class AdminJobQuerySet(models.QuerySet):
    def active(self, target: str = EVERY_COMPANY):
        return self.filter(target=target, state__in=ADMIN_JOB_ACTIVE)


class AdminJob(models.Model):
    """A long admin action (switch the scheme, recompute every company) run by a worker.

    The admin request records it (``scoring.services.admin_job_start``) and publishes its task
    after the commit; the row is the durable record, so a lost task is published again by the
    beat ``refresh-sweep``. The run that holds it (``run_id``, its Celery task id) writes
    ``done_count`` after each chunk and ``heartbeat_at`` with it; the admin's progress page
    polls it. At most one active job per ``target`` (a constraint, so two ops racing cannot both
    start one).
    """

    kind = models.CharField(max_length=32, choices=AdminJobKind.choices)
    target = models.CharField(max_length=64, default=EVERY_COMPANY)
    arguments = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=8, choices=AdminJobState.choices, default=AdminJobState.QUEUED
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: The last sign of life: queued (or queued again), claimed, or a chunk done. The sweep
    #: publishes again a queued job whose task never came, and queues again a running one whose
    #: worker went silent.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    run_id = models.CharField(max_length=64, blank=True, help_text="The task run holding it")
    attempts = models.PositiveSmallIntegerField(default=0)
    done_count = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True, help_text="The result, when done")
    error = models.TextField(blank=True)

    objects = AdminJobQuerySet.as_manager()

    class Meta:
        verbose_name = "background job"
        ordering = ["-requested_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(state__in=["queued", "running"]),
                name="one_active_admin_job_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_state_display()}) #{self.pk}"

    @property
    def finished(self) -> bool:
        return self.state in (AdminJobState.DONE, AdminJobState.FAILED)


class RecomputeRun(models.Model):
    """A full recompute fanned out to the workers as one task per chunk of accounts.

    There is no result backend (``CELERY_RESULT_BACKEND = None``), so completion is kept here:
    the planner writes the run and one ``RecomputeChunk`` row per task in one transaction, each
    chunk task stamps its own row once its scores are committed, and the task that stamps the
    last one stamps ``finished_at``. A row per chunk rather than a counter: a chunk delivered
    twice (its worker killed after the commit, before the acknowledgement) stamps nothing the
    second time, where a counter would count it twice and call the run finished early.
    ``recompute_scores --all --fan-out`` waits on ``finished_at``.
    """

    reason = models.CharField(max_length=64, blank=True)
    history = models.BooleanField(default=False, help_text="Monthly history rebuilt too")
    as_of = models.DateField(help_text="The scoring date every chunk scores on")
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    companies = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        state = f"finished {self.finished_at:%H:%M:%S}" if self.finished_at else "running"
        return f"recompute of {self.companies} accounts ({self.chunks} chunks), {state}"


class RecomputeChunk(models.Model):
    """One chunk task of a ``RecomputeRun``: ``done_at`` is set once, by the first run of it."""

    run = models.ForeignKey(RecomputeRun, on_delete=models.CASCADE, related_name="chunk_rows")
    index = models.PositiveIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)
    written = models.PositiveIntegerField(default=0, help_text="Snapshots this chunk wrote")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="recompute_chunk_unique")
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of run {self.run_id}"
