"""The Product Usage Reporting dashboard: the rows it lists and the filters that narrow them.

``dashboard_accounts()`` is the selector: every company with its current score snapshot (a
``FilteredRelation`` join, at most one row per company thanks to ``one_current_snapshot``), its
CSM, and instance counts by type as correlated subqueries on the ``(company, instance_type)``
index. No ``GROUP BY``: the page costs the same few queries for 12 accounts or 5,000, and a
``LIMIT`` lets the database compute the subqueries for the 50 rows it shows only.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import (
    DateTimeField,
    Exists,
    F,
    FilteredRelation,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)

from accounts.models import Company, Segment
from accounts.permissions import owns_accounts
from instances.models import Instance, InstanceType

COLOR_CHOICES = (("Red", "Red"), ("Yellow", "Yellow"), ("Green", "Green"), ("NA", "NA"))

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

#: Instance-count columns: annotation → the instance types it counts.
INSTANCE_COUNTS = {
    "n_production": (InstanceType.PRODUCTION,),
    "n_non_production": (InstanceType.NON_PRODUCTION,),
    "n_unknown": (InstanceType.UNKNOWN,),
    "n_other": (InstanceType.OBSOLETE, InstanceType.GEO_SECONDARY),
}

#: Accounts for which product usage cannot be measured: no current snapshot, no fresh ping from
#: an included Production instance (``as_of`` empty), or no billable users (GitLab < 14.0).
NO_USAGE_DATA = (
    Q(snap__id__isnull=True) | Q(snap__as_of__isnull=True) | Q(snap__billable_users__isnull=True)
)


def _instances_of_company(**filters) -> QuerySet:
    return Instance.objects.filter(company=OuterRef("pk"), **filters).order_by()


class SubqueryCount(Func):
    """``COUNT(*)`` over a correlated subquery's rows: no ``GROUP BY``, 0 when none match."""

    template = "COUNT(*)"
    output_field = IntegerField()


class SubqueryMax(Func):
    function = "MAX"


def _count(types) -> Subquery:
    counted = _instances_of_company(instance_type__in=types).annotate(n=SubqueryCount())
    return Subquery(counted.values("n"), output_field=IntegerField())


def _last_ping() -> Subquery:
    newest = _instances_of_company().annotate(newest=SubqueryMax("last_ping_at"))
    return Subquery(newest.values("newest"), output_field=DateTimeField())


def dashboard_accounts() -> QuerySet[Company]:
    """Every company with the figures of the dashboard, as annotations (see module docstring)."""
    current = FilteredRelation("score_snapshots", condition=Q(score_snapshots__is_current=True))
    return (
        Company.objects.alias(snap=current)
        .select_related("csm")
        .annotate(
            snapshot_id=F("snap__id"),
            licensed_seats=F("snap__licensed_seats"),
            billable_users=F("snap__billable_users"),
            license_utilization=F("snap__license_utilization"),
            lu_color=F("snap__license_utilization_color"),
            ue_color=F("snap__user_engagement_color"),
            scm_color=F("snap__scm_color"),
            ci_color=F("snap__ci_color"),
            cd_color=F("snap__cd_color"),
            devsecops_color=F("snap__devsecops_color"),
            product_usage_value=F("snap__product_usage_value"),
            product_usage_color=F("snap__product_usage_color"),
            overall_color=F("snap__overall_color"),
            as_of=F("snap__as_of"),
            last_ping_at=_last_ping(),
            **{name: _count(types) for name, types in INSTANCE_COUNTS.items()},
        )
    )


# --------------------------------------------------------------------------------------------------
# Who lands on "my accounts"


def csm_choices(user=None):
    """People who own at least one account (and ``user``, when a CSM), in one small query."""
    owners = Q(Exists(Company.objects.filter(csm=OuterRef("pk"))))
    if user is not None and owns_accounts(user):
        owners |= Q(pk=user.pk)
    users = (
        get_user_model()
        .objects.filter(owners)
        .order_by("first_name", "last_name", "username")
        .only("pk", "username", "first_name", "last_name")
    )
    choices = []
    for person in users:
        name = person.get_full_name() or person.username
        choices.append((str(person.pk), f"{name} (me)" if user and person.pk == user.pk else name))
    return [*choices, ("none", "No CSM (unowned)")]


class PortalFilterSet(django_filters.FilterSet):
    """Base of the portal's filter sets.

    ``secondary_fields`` fold under "more filters" in ``partials/filter_form.html``. A ``csm``
    filter lists the signed-in person as "(me)".
    """

    secondary_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "csm" in self.filters:
            user = getattr(self.request, "user", None)
            # A list, not a callable: Django would re-run a callable at every iteration.
            self.filters["csm"].extra["choices"] = csm_choices(user)

    @property
    def secondary_active(self) -> bool:
        return any(self.data.get(name) for name in self.secondary_fields)


#: Query parameters that sort, page or export a list rather than filter it.
NOT_FILTERS = frozenset({"sort", "page", "per_page", "_export"})


def with_csm_default(data, user, field: str = "csm"):
    """``data`` (a QueryDict) with the CSM filter set to ``user`` when no filter was given.

    A CSM lands on their own accounts; choosing "All CSMs" sends ``csm=`` (empty), which is a
    choice, so the default no longer applies. Sorting and paging parameters are not filters.
    """
    data = data.copy()
    if owns_accounts(user) and field not in data and not (set(data) - NOT_FILTERS):
        data[field] = str(user.pk)
    return data


class CsmFilter(django_filters.ChoiceFilter):
    """Filter on the account's CSM: a user id, ``none`` for unowned accounts, empty for all."""

    def __init__(self, *args, company_path: str = "", **kwargs):
        self.company_path = company_path
        kwargs.setdefault("label", "CSM")
        kwargs.setdefault("empty_label", "All CSMs")
        kwargs.setdefault("choices", csm_choices)
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value in ("", None):
            return qs
        if value == "none":
            return qs.filter(**{f"{self.company_path}csm__isnull": True})
        return qs.filter(**{f"{self.company_path}csm_id": value})


def color_filter(annotation: str, label: str) -> django_filters.ChoiceFilter:
    def apply(queryset, name, value):
        if value == "NA":
            # NA: the measure is NA, or there is no snapshot at all.
            return queryset.filter(Q(**{annotation: "NA"}) | Q(**{f"{annotation}__isnull": True}))
        return queryset.filter(**{annotation: value})

    return django_filters.ChoiceFilter(
        label=label, choices=COLOR_CHOICES, empty_label="Any", method=apply
    )


def checkbox_filter(label: str, method: str) -> django_filters.BooleanFilter:
    """A tick box: ticked narrows the list, unticked leaves it alone."""
    return django_filters.BooleanFilter(label=label, method=method, widget=forms.CheckboxInput)


class DashboardFilter(PortalFilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Account name")
    csm = CsmFilter()
    segment = django_filters.ChoiceFilter(choices=Segment.choices, empty_label="All segments")
    has_unknown = checkbox_filter("Has Unknown instances", "filter_has_unknown")
    no_usage_data = checkbox_filter("No usage data", "filter_no_usage_data")
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
        return queryset.filter(Exists(_instances_of_company(instance_type=InstanceType.UNKNOWN)))

    def filter_no_usage_data(self, queryset, name, value):
        return queryset.filter(NO_USAGE_DATA) if value else queryset
