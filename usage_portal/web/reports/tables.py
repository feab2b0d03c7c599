"""Tables of the cross-account instance reports: Burn-Down, versions and data quality.

Built from the kit's column types (``usage_portal.web.kit.tables``), rendered by django-tables2.
"""

from __future__ import annotations

from urllib.parse import urlencode

import django_tables2 as tables
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.permissions import can_label
from instances.models import (
    Instance,
    InstanceType,
    LicenseMappingChange,
    RejectedPayload,
    edition_label,
    edition_title,
)
from instances.versions import release_label, release_of, releases_behind
from scoring.scorecard import percent_figure
from usage_portal.web.kit.tables import (
    NUM,
    AccountColumn,
    ActionColumn,
    CsmColumn,
    DateColumn,
    NumberColumn,
    nulls_last,
    percent,
    pill,
)
from usage_portal.web.timezones import short_moment_text

NOWRAP = {"td": {"class": "nowrap"}}
TYPE_LABELS = dict(InstanceType.choices)


def not_production_url(company_id: int, instance_id: int) -> str:
    """The account's NOT Production Instance Usage report, focused on one instance."""
    query = urlencode({"report": "not_production", "instance": instance_id})
    return f"{reverse('account_trends', args=[company_id])}?{query}"


def edit_url(company_id: int, instance_id: int) -> str:
    return reverse("instance_edit", args=[company_id, instance_id])


def days_since(moment) -> int | None:
    if moment is None:
        return None
    return (timezone.now() - moment).days


def _when(moment) -> str:
    """When a pending change applies, short: "3 Dec 14:00 CET" (changes apply within days), in
    the reader's zone; downloads write UTC (``kit.exports``)."""
    return short_moment_text(moment)


def instance_name(record: Instance) -> str:
    identity = record.identity
    short = identity if record.is_saas or len(identity) <= 13 else f"{identity[:8]}…"
    return format_html(
        '<span class="instance-name">{}</span><br><code class="small muted" title="{}">{}</code>',
        str(record),
        identity,
        short,
    )


class InstanceColumn(tables.Column):
    """Hostname (or namespace) with its uuid underneath; exports the hostname alone."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("verbose_name", "Instance")
        kwargs.setdefault("accessor", "hostname")
        kwargs.setdefault("order_by", ("hostname", "uuid"))
        kwargs.setdefault("empty_values", ())
        super().__init__(*args, **kwargs)

    def render(self, record):
        return instance_name(record)

    def value(self, record):
        return str(record)


def instance_account(**kwargs) -> AccountColumn:
    """The instance's account, linked to its C360 summary."""
    return AccountColumn(accessor="company__name", pk_field="company_id", **kwargs)


# --------------------------------------------------------------------------------------------------
# CSM Burn-Down


class BurndownTable(tables.Table):
    label = "Unknown instances on CSM-owned accounts"

    account = instance_account()
    instance = InstanceColumn()
    uuid = tables.Column(verbose_name="UUID", visible=False)
    # Every row is Unknown: the type is shown (under the instance) only when a change is
    # pending, and exported for every row.
    instance_type = tables.Column(
        verbose_name="Type", empty_values=(), orderable=False, visible=False
    )
    csm = CsmColumn(accessor="company__csm")
    segment = tables.Column(accessor="company__segment", verbose_name="Segment", visible=False)
    age = NumberColumn(verbose_name="Age (days)", accessor="first_seen")
    first_seen = DateColumn(verbose_name="First seen", visible=False)
    last_ping_at = DateColumn(verbose_name="Last ping")
    version = tables.Column(order_by=("version_sort", "pk"), attrs=NOWRAP)
    billable = NumberColumn(verbose_name="Billable users")
    umau = NumberColumn(verbose_name="Monthly active users")
    usage_share = tables.Column(verbose_name="Share of account usage", attrs=NUM)
    subscription = tables.Column(
        accessor="subscription__name", verbose_name="Subscription", visible=False
    )
    actions = ActionColumn("Label it", css_class="actions")

    class Meta:
        model = Instance
        fields = ()
        order_by = ("-age",)
        attrs = {"class": "table table-report table-burndown"}
        empty_text = "No Unknown instances here: every instance is labeled."

    def render_instance(self, record):
        if not record.pending_type:
            return instance_name(record)
        return format_html(
            '{}<div class="pending-type small">{} <span class="pill pill-pending" title="Pending '
            'label change">→ {}</span> <span class="nowrap">on {}</span></div>',
            instance_name(record),
            record.get_instance_type_display(),
            TYPE_LABELS.get(record.pending_type, record.pending_type),
            _when(record.pending_at),
        )

    def value_instance(self, record):
        return str(record)

    def value_instance_type(self, record):
        now = record.get_instance_type_display()
        if not record.pending_type:
            return now
        new = TYPE_LABELS.get(record.pending_type, record.pending_type)
        return f"{now} → {new} on {_when(record.pending_at)}"

    def render_age(self, value):
        return days_since(value)

    def value_age(self, value):
        return days_since(value)

    def order_age(self, queryset, is_descending):
        # The older the instance, the earlier it was first seen.
        return queryset.order_by("first_seen" if is_descending else "-first_seen", "pk"), True

    def render_usage_share(self, value):
        return percent(value)

    def value_usage_share(self, value):
        return percent_figure("usage_share_percent", value)

    def order_usage_share(self, queryset, is_descending):
        return queryset.order_by(nulls_last("usage_share", is_descending), "pk"), True

    def render_actions(self, record):
        # (href, accessible name, visible text)
        links = [
            (
                not_production_url(record.company_id, record.pk),
                f"NOT Production usage report for {record}",
                "Usage report",
            )
        ]
        if can_label(self.request.user, record.company):
            links.append((edit_url(record.company_id, record.pk), f"Label {record}", "Edit"))
        return format_html_join(
            " ", '<a class="button small" href="{}" aria-label="{}">{}</a>', links
        )


# --------------------------------------------------------------------------------------------------
# GitLab versions


#: GitLab backports security fixes to the current and the two previous monthly releases.
SECURITY_MAINTAINED = 2


class VersionsTable(tables.Table):
    label = "Self-managed instances and their GitLab version"

    account = instance_account()
    csm = CsmColumn(accessor="company__csm")
    instance = InstanceColumn()
    uuid = tables.Column(verbose_name="UUID", visible=False)
    version = tables.Column(verbose_name="Version", order_by=("version_sort", "pk"), attrs=NOWRAP)
    release = tables.Column(
        verbose_name="Release",
        accessor="version_sort",
        order_by=("version_sort", "pk"),
        visible=False,
    )
    behind = tables.Column(
        verbose_name="Releases behind",
        accessor="version_sort",
        order_by=("-version_sort", "pk"),
        attrs=NUM,
    )
    edition = tables.Column()
    instance_type = tables.Column(verbose_name="Type")
    last_ping_at = DateColumn(verbose_name="Last ping")
    subscription = tables.Column(accessor="subscription__name", verbose_name="Subscription")

    class Meta:
        model = Instance
        fields = ()
        order_by = ("account", "-version")
        attrs = {"class": "table table-report table-versions"}
        empty_text = "No self-managed instance matches these filters."

    def __init__(self, *args, newest=None, older_than=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.newest = newest
        self.older_than = older_than

    def render_release(self, value):
        return release_label(release_of(value))

    def value_behind(self, value):
        return releases_behind(release_of(value), self.newest)

    def render_behind(self, value):
        behind = releases_behind(release_of(value), self.newest)
        if behind is None:
            return "—"
        if behind == 0:
            return pill("Green", "newest", title="On the newest release seen")
        color = "Green" if behind <= SECURITY_MAINTAINED else "Yellow" if behind < 12 else "Red"
        return pill(color, behind, title=f"{behind} minor releases behind the newest seen")

    def render_edition(self, value):
        return format_html('<span title="{}">{}</span>', edition_title(value), edition_label(value))

    def value_edition(self, value):
        return edition_label(value)

    def render_instance_type(self, record):
        return record.get_instance_type_display()

    def value_instance_type(self, record):
        return record.get_instance_type_display()


# --------------------------------------------------------------------------------------------------
# Data quality


def short_key(value: str | None) -> str:
    return f"{value[:12]}…" if value else "—"


class UnmappedLicenseTable(tables.Table):
    """Rows are dicts from ``unmapped_licenses()``; call ``attach_instances()`` after paging."""

    label = "Licenses that map to no subscription"

    license = tables.Column(
        verbose_name="License",
        accessor="md5",
        order_by=("md5", "sha256", "license"),
        empty_values=(),
    )
    subscription_name = tables.Column(
        verbose_name="Subscription id in pings",
        empty_values=(),
        order_by=("subscription_name", "license"),
    )
    instances = NumberColumn(verbose_name="Instances", tiebreak="license")
    hostnames = tables.Column(verbose_name="Hostnames", empty_values=(), orderable=False)
    pings = NumberColumn(verbose_name="Pings", tiebreak="license")
    first_seen = DateColumn(verbose_name="First ping", tiebreak="license")
    last_seen = DateColumn(verbose_name="Last ping", tiebreak="license")
    map = ActionColumn("Map to subscription", css_class="map-cell")

    class Meta:
        sequence = ("license", "subscription_name", "map", "...")
        prefix = "lic-"
        order_by = ("-last_seen",)
        attrs = {"class": "table table-report"}
        empty_text = "Every ping's license maps to a subscription."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instances_by_license: dict[int, list[dict]] = {}

    def attach_instances(self, lookup) -> None:
        """Load the instances behind the rows on this page with ``lookup(license_ids)``."""
        if self.page:
            ids = [row.record["license"] for row in self.page.object_list]
            self.instances_by_license = lookup(ids)

    def render_license(self, record):
        parts = []
        if record["md5"]:
            parts.append(("md5", record["md5"]))
        if record["sha256"]:
            parts.append(("sha256", record["sha256"]))
        return format_html_join(
            mark_safe("<br>"),
            '<span class="muted small">{}</span> <code title="{}">{}</code>',
            ((kind, key, short_key(key)) for kind, key in parts),
        )

    def render_subscription_name(self, value):
        return value or "—"

    def render_hostnames(self, record):
        rows = self.instances_by_license.get(record["license"], [])
        names = [r["instance__hostname"] or r["instance__uuid"] for r in rows]
        return ", ".join(names) or "—"

    def _csrf_token(self) -> str:
        """One masked token for the page's forms (``get_token`` draws a new mask each call)."""
        if getattr(self, "_token", None) is None:
            self._token = get_token(self.request)
        return self._token

    def render_map(self, record):
        action = reverse("license_map", args=[record["license"]])
        return format_html(
            '<form method="post" action="{action}" class="map-form">'
            '<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
            '<input type="text" name="subscription" value="{value}" required '
            'placeholder="A-S00012345" aria-label="Subscription for license {key}">'
            '<button type="submit" class="button small primary">Map</button></form>',
            action=action,
            token=self._csrf_token(),
            value=record["subscription_name"] or "",
            key=short_key(record["md5"] or record["sha256"]),
        )


class NamespaceTable(tables.Table):
    label = "SaaS namespaces not tied to a subscription"

    namespace = InstanceColumn(verbose_name="Namespace", order_by=("namespace_path",))
    subscription_seen = tables.Column(verbose_name="Subscription named in the export")
    ping_count = NumberColumn(verbose_name="Pings")
    last_ping_at = DateColumn(verbose_name="Last ping")

    class Meta:
        model = Instance
        fields = ()
        prefix = "ns-"
        order_by = ("-last_ping_at",)
        attrs = {"class": "table table-report"}
        empty_text = "Every SaaS namespace is tied to a subscription."


class NoUsageTable(tables.Table):
    """Rows from ``accounts_without_usage()``; the reason is worked out in Python per row."""

    label = "Accounts with no usage data"

    name = AccountColumn()
    csm = CsmColumn()
    segment = tables.Column()
    reason = tables.Column(
        verbose_name="Why there is no usage data", empty_values=(), orderable=False
    )
    n_instances = NumberColumn(verbose_name="Instances")
    last_ping_at = DateColumn(verbose_name="Last ping (any instance)")
    fix = ActionColumn("What to do")

    class Meta:
        prefix = "acct-"
        order_by = ("name",)
        attrs = {"class": "table table-report"}
        empty_text = "Every account has usage data."

    def __init__(self, *args, explain, **kwargs):
        super().__init__(*args, **kwargs)
        self.explain = explain

    def render_reason(self, record):
        reason = self.explain(record)
        return format_html(
            '<strong class="reason reason-{}">{}</strong><br><span class="small">{}</span>',
            reason.code,
            reason.title,
            reason.detail,
        )

    def value_reason(self, record):
        reason = self.explain(record)
        return f"{reason.title}: {reason.detail}"

    def render_fix(self, record):
        reason = self.explain(record)
        if not reason.link:
            return reason.action
        return format_html(
            '<a href="{}">{}</a>', reverse(reason.link, args=[record.pk]), reason.action
        )


class StaleTable(tables.Table):
    label = "Stale instances"

    account = instance_account(empty_values=())
    instance = InstanceColumn()
    instance_type = tables.Column(verbose_name="Type")
    csm = CsmColumn(accessor="company__csm")
    version = tables.Column(order_by=("version_sort", "pk"))
    last_ping_at = DateColumn(verbose_name="Last ping")
    silent = NumberColumn(verbose_name="Days silent", accessor="last_ping_at")
    subscription = tables.Column(accessor="subscription__name", verbose_name="Subscription")

    class Meta:
        model = Instance
        fields = ()
        prefix = "stale-"
        order_by = ("-last_ping_at",)
        attrs = {"class": "table table-report"}
        empty_text = "Every instance has reported recently."

    def render_account(self, record):
        if record.company_id is None:
            return format_html('<span class="muted">{}</span>', "No account (unmapped)")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("account_summary", args=[record.company_id]),
            record.company.name,
        )

    def render_instance_type(self, record):
        return record.get_instance_type_display()

    def render_silent(self, value):
        return days_since(value)

    def order_silent(self, queryset, is_descending):
        return queryset.order_by("last_ping_at" if is_descending else "-last_ping_at", "pk"), True


class RejectedTable(tables.Table):
    label = "Rejected payloads"

    received_at = tables.DateTimeColumn(verbose_name="Received", format="Y-m-d H:i T")
    source = tables.Column()
    filename = tables.Column(verbose_name="File")
    reason = tables.Column(orderable=False)

    class Meta:
        model = RejectedPayload
        fields = ()
        prefix = "rej-"
        order_by = ("-received_at",)
        attrs = {"class": "table table-report"}
        empty_text = "No payload was rejected."

    def render_source(self, record):
        return record.get_source_display()


class MappingChangeTable(tables.Table):
    """The license-mapping audit (``LicenseMappingChange``), newest first."""

    label = "License mapping changes"

    changed_at = tables.DateTimeColumn(verbose_name="When", format="Y-m-d H:i T")
    license = tables.Column(verbose_name="License", empty_values=(), orderable=False)
    change = tables.Column(verbose_name="Change", empty_values=(), orderable=False)
    via = tables.Column(verbose_name="How")
    changed_by = tables.Column(verbose_name="By", empty_values=())

    class Meta:
        model = LicenseMappingChange
        fields = ()
        prefix = "map-"
        order_by = ("-changed_at",)
        attrs = {"class": "table table-report"}
        empty_text = "No license mapping has changed yet."

    def render_license(self, record):
        key = record.license.md5 or record.license.sha256
        return format_html('<code title="{}">{}</code>', key or "", short_key(key))

    def value_license(self, record):
        return record.license.md5 or record.license.sha256 or ""

    def render_change(self, record):
        return f"{record.from_label} → {record.to_label}"

    def render_via(self, record):
        return record.get_via_display()

    def render_changed_by(self, record):
        return record.changed_by.username if record.changed_by_id else "—"

    def value_changed_by(self, record):
        return record.changed_by.username if record.changed_by_id else ""

    def order_changed_at(self, queryset, is_descending):
        key = ("-changed_at", "-pk") if is_descending else ("changed_at", "pk")
        return queryset.order_by(*key), True
