"""Filter sets of the cross-account instance reports: CSM Burn-Down and GitLab versions."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db.models import Q
from django.utils import timezone

from accounts.models import CSM_OWNED_SEGMENTS, Segment
from instances.models import Instance, InstanceType
from instances.versions import Release, release_n_behind
from usage_portal.web.kit.filters import CsmFilter, PortalFilterSet


def _account_or_host(queryset, value: str):
    """Part of the account's name or the hostname, or the exact uuid."""
    value = value.strip()
    if not value:
        return queryset
    return queryset.filter(
        Q(company__name__icontains=value) | Q(hostname__icontains=value) | Q(uuid=value)
    )


class BurndownFilter(PortalFilterSet):
    csm = CsmFilter(company_path="company__")
    segment = django_filters.ChoiceFilter(
        field_name="company__segment",
        choices=[(s.value, s.label) for s in CSM_OWNED_SEGMENTS],
        label="Segment",
        empty_label="Strategic and Growth",
    )
    q = django_filters.CharFilter(
        label="Account or hostname", method="filter_text", help_text="Part of a name"
    )
    older_than = django_filters.NumberFilter(
        label="Unknown for at least (days)",
        method="filter_older_than",
        min_value=0,
        max_value=36_500,  # a century: beyond it timedelta overflows (a 500, found by hypothesis)
    )

    class Meta:
        model = Instance
        fields: list[str] = []

    def filter_text(self, queryset, name, value):
        return _account_or_host(queryset, value)

    def filter_older_than(self, queryset, name, value):
        if value is None:
            return queryset
        since = timezone.now() - timedelta(days=int(value))
        return queryset.filter(first_seen__lte=since)


class VersionsFilter(PortalFilterSet):
    csm = CsmFilter(company_path="company__")
    older_than = django_filters.NumberFilter(
        label="Older than N minor releases",
        method="filter_older_than",
        min_value=1,
        max_value=200,
        help_text="Relative to the newest version any instance reports",
    )
    instance_type = django_filters.ChoiceFilter(
        choices=InstanceType.choices, empty_label="All instance types"
    )
    segment = django_filters.ChoiceFilter(
        field_name="company__segment",
        choices=Segment.choices,
        label="Segment",
        empty_label="All segments",
    )
    q = django_filters.CharFilter(label="Account or hostname", method="filter_text")

    class Meta:
        model = Instance
        fields: list[str] = []

    def __init__(self, *args, newest: Release | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.newest = newest

    @property
    def threshold(self) -> Release | None:
        """The oldest release not filtered out, when "older than" is set."""
        value = self.form.cleaned_data.get("older_than") if self.is_bound else None
        if value is None or self.newest is None:
            return None
        return release_n_behind(self.newest, int(value))

    def filter_older_than(self, queryset, name, value):
        if value is None or self.newest is None:
            return queryset
        major, minor = release_n_behind(self.newest, int(value))
        return queryset.filter(version_sort__lt=major * 1_000_000 + minor * 1_000)

    def filter_text(self, queryset, name, value):
        return _account_or_host(queryset, value)
