"""The dashboard's filters: name, CSM, segment, Unknown instances, no usage data, colours."""

from __future__ import annotations

import django_filters
from django.db.models import Exists

from accounts.models import Company, Segment
from instances.models import InstanceType
from usage_portal.web.dashboard.selectors import (
    NO_USAGE_DATA,
    NO_USAGE_DATA_HELP,
    company_instances,
)
from usage_portal.web.kit.filters import (
    CsmFilter,
    PortalFilterSet,
    checkbox_filter,
    color_filter,
)

#: filter name → (annotation it reads, label). The order is the table's.
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


class DashboardFilter(PortalFilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Account name")
    csm = CsmFilter()
    segment = django_filters.ChoiceFilter(choices=Segment.choices, empty_label="All segments")
    has_unknown = checkbox_filter("Has Unknown instances", "filter_has_unknown")
    no_usage_data = checkbox_filter(
        "No usage data", "filter_no_usage_data", help_text=NO_USAGE_DATA_HELP
    )
    lu_color = color_filter(*COLOR_FILTERS["lu_color"])
    ue_color = color_filter(*COLOR_FILTERS["ue_color"])
    scm_color = color_filter(*COLOR_FILTERS["scm_color"])
    ci_color = color_filter(*COLOR_FILTERS["ci_color"])
    cd_color = color_filter(*COLOR_FILTERS["cd_color"])
    devsecops_color = color_filter(*COLOR_FILTERS["devsecops_color"])
    product_usage_color = color_filter(*COLOR_FILTERS["product_usage_color"])
    overall_color = color_filter(*COLOR_FILTERS["overall_color"])

    #: Shown folded under "Measure colours" in the filter form.
    secondary_fields = tuple(COLOR_FILTERS)

    class Meta:
        model = Company
        fields: list[str] = []

    def filter_has_unknown(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(Exists(company_instances(instance_type=InstanceType.UNKNOWN)))

    def filter_no_usage_data(self, queryset, name, value):
        return queryset.filter(NO_USAGE_DATA) if value else queryset
