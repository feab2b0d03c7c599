"""The dashboard's filters: name, CSM, segment, Unknown instances, no usage data, colours.

Each reads the account's stored listing (``Company.listing_*``), never a join or a subquery:
the count and the page keys stay on the one table and its indexes.
"""

from __future__ import annotations

import django_filters

from accounts.models import LISTING_RANKS, Company, Segment
from usage_portal.web.dashboard.selectors import (
    NO_USAGE_DATA_HELP,
    NO_USAGE_DATA_LISTED,
    RANKS,
)
from usage_portal.web.kit.filters import (
    COLOR_CHOICES,
    CsmFilter,
    PortalFilterSet,
    checkbox_filter,
)

#: filter name → (the colour annotation it filters, label). The order is the table's.
COLOR_FILTERS = {
    "lu_color": ("lu_color", "License Utilization"),
    "ue_color": ("ue_color", "User Engagement"),
    "scm_color": ("scm_color", "SCM"),
    "ci_color": ("ci_color", "CI"),
    "cd_color": ("cd_color", "CD"),
    "devsecops_color": ("devsecops_color", "DevSecOps"),
    "product_usage_color": ("product_usage_color", "Overall product usage"),
    "overall_color": ("overall_color", "Overall health"),
}


def rank_filter(annotation: str, label: str) -> django_filters.ChoiceFilter:
    """Filter on a measure's colour through its listing rank (NA: NA or never scored)."""
    field = RANKS[annotation]

    def apply(queryset, name, value):
        return queryset.filter(**{field: LISTING_RANKS.index(value)})

    return django_filters.ChoiceFilter(
        label=label, choices=COLOR_CHOICES, empty_label="Any", method=apply
    )


class DashboardFilter(PortalFilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Account name")
    csm = CsmFilter()
    segment = django_filters.ChoiceFilter(choices=Segment.choices, empty_label="All segments")
    has_unknown = checkbox_filter("Has Unknown instances", "filter_has_unknown")
    no_usage_data = checkbox_filter(
        "No usage data", "filter_no_usage_data", help_text=NO_USAGE_DATA_HELP
    )
    lu_color = rank_filter(*COLOR_FILTERS["lu_color"])
    ue_color = rank_filter(*COLOR_FILTERS["ue_color"])
    scm_color = rank_filter(*COLOR_FILTERS["scm_color"])
    ci_color = rank_filter(*COLOR_FILTERS["ci_color"])
    cd_color = rank_filter(*COLOR_FILTERS["cd_color"])
    devsecops_color = rank_filter(*COLOR_FILTERS["devsecops_color"])
    product_usage_color = rank_filter(*COLOR_FILTERS["product_usage_color"])
    overall_color = rank_filter(*COLOR_FILTERS["overall_color"])

    #: Shown folded under "Measure colours" in the filter form.
    secondary_fields = tuple(COLOR_FILTERS)

    class Meta:
        model = Company
        fields: list[str] = []

    def filter_has_unknown(self, queryset, name, value):
        return queryset.filter(listing_unknown__gt=0) if value else queryset

    def filter_no_usage_data(self, queryset, name, value):
        return queryset.filter(NO_USAGE_DATA_LISTED) if value else queryset
