"""The dashboard table: one row per account, its scorecard's figures and its instance counts.

Each column is declared once, here. The page's rows are built straight from the records by the
kit's ``OwnRowsTable`` (each column's ``cell_function``), which renders exactly what
django-tables2 would at a fraction of the cost; sorting, pagination, headers and the CSV/XLSX
exports go through django-tables2. Pills are left out of exports; hidden columns carry the same
figures as plain numbers and words.

Every sort reads the account's stored listing and ends on the primary key (a total order, so
pages never overlap), with an index per order (``accounts.models._listing_indexes``): the name,
a colour's rank then the name, a figure with missing ones last in both directions, a count.
Columns that are only exported (hidden) do not sort.

A person chooses which columns the page shows (``CHOOSABLE_COLUMNS``, remembered in
``accounts.TableColumns``; ``DEFAULT_COLUMNS`` until they do). Exports always carry every column:
a spreadsheet is where one reads the rest. The health cells carry ``data-label`` and the class
``health``: on a phone each row becomes a card of the account and its colours.
"""

from __future__ import annotations

import django_tables2 as tables

from accounts.models import Company
from scoring.scorecard import figure, percent_figure
from usage_portal.web.dashboard.selectors import RANKS, csm_order
from usage_portal.web.kit.tables import (
    AccountColumn,
    ColorColumn,
    CsmColumn,
    DateColumn,
    NumberColumn,
    OwnRowsTable,
    PillColumn,
    TextColumn,
    percent,
    whole,
)


def _health(classes: str, label: str) -> dict:
    """Cell attributes of a health measure: labelled for the phone's card layout."""
    return {"td": {"class": f"{classes} health", "data-label": label}, "th": {"class": classes}}


class ListedCsmColumn(CsmColumn):
    """The CSM column, sorted by the owner's name without a join (``selectors.csm_order``)."""

    def order(self, queryset, is_descending):
        return queryset.order_by(*csm_order(descending=is_descending)), True


class DashboardTable(OwnRowsTable):
    name = AccountColumn(
        order_by=("name", "pk"), attrs={"td": {"class": "account"}, "th": {"class": "account"}}
    )
    crm_account_id = tables.Column(verbose_name="CRM account id", visible=False, orderable=False)
    csm = ListedCsmColumn()
    segment = TextColumn(order_by=("segment", "name", "pk"))
    licensed_seats = NumberColumn(verbose_name="Licensed seats")
    billable_users = NumberColumn(verbose_name="Billable users")
    license_utilization = PillColumn(
        verbose_name="License utilization",
        color="lu_color",
        text=percent,
        attrs=_health("num", "License utilization"),
    )
    lu_percent = tables.Column(
        verbose_name="License utilization (%)",
        accessor="license_utilization",
        visible=False,
        orderable=False,
    )
    lu_color = ColorColumn(
        verbose_name="License utilization colour", visible=False, orderable=False
    )
    ue_color = ColorColumn(
        verbose_name="User Engagement",
        rank=RANKS["ue_color"],
        attrs=_health("color", "User Engagement"),
    )
    scm_color = ColorColumn(
        verbose_name="SCM", rank=RANKS["scm_color"], attrs=_health("color", "SCM")
    )
    ci_color = ColorColumn(verbose_name="CI", rank=RANKS["ci_color"], attrs=_health("color", "CI"))
    cd_color = ColorColumn(verbose_name="CD", rank=RANKS["cd_color"], attrs=_health("color", "CD"))
    devsecops_color = ColorColumn(
        verbose_name="DevSecOps", rank=RANKS["devsecops_color"], attrs=_health("color", "DevSecOps")
    )
    product_usage = PillColumn(
        verbose_name="Product usage",
        accessor="product_usage_value",
        color="product_usage_color",
        text=whole,
        attrs=_health("num", "Product usage"),
    )
    product_usage_value = tables.Column(
        verbose_name="Product usage score", visible=False, orderable=False
    )
    product_usage_color = ColorColumn(
        verbose_name="Product usage colour", visible=False, orderable=False
    )
    overall_color = ColorColumn(
        verbose_name="Overall health",
        rank=RANKS["overall_color"],
        attrs=_health("color overall", "Overall health"),
    )
    last_ping_at = DateColumn(verbose_name="Last ping")
    n_production = NumberColumn(verbose_name="Production", never_null=True)
    n_non_production = NumberColumn(verbose_name="Non-Prod", never_null=True)
    n_unknown = NumberColumn(verbose_name="Unknown", never_null=True)
    n_other = NumberColumn(verbose_name="Other", never_null=True)

    #: partials/table.html: a scrolling region whose header row and account column stay put.
    sticky = True
    noun = "account"

    class Meta:
        model = Company
        fields = ()
        order_by = ("name",)
        empty_text = "No accounts match these filters."
        attrs = {"class": "table table-report table-dashboard table-compact"}

    # Exports: hidden columns, plain figures.
    def value_lu_percent(self, value):
        return percent_figure("license_utilization_percent", value)

    def value_product_usage_value(self, value):
        return figure("product_usage_score", value)


#: The columns a person may show or hide: every column the page shows but the account's name.
CHOOSABLE_COLUMNS: tuple[str, ...] = tuple(
    name
    for name, column in DashboardTable.base_columns.items()
    if column.visible and name != "name"
)
#: What a 1366–1440 px screen shows before anyone chooses: who owns the account, every health
#: colour, the last ping and the instances still to label. Seats, billable users, segment and
#: the other instance counts are a tick away (and always in the exports).
DEFAULT_COLUMNS: tuple[str, ...] = (
    "csm",
    "license_utilization",
    "ue_color",
    "scm_color",
    "ci_color",
    "cd_color",
    "devsecops_color",
    "product_usage",
    "overall_color",
    "last_ping_at",
    "n_production",
    "n_unknown",
)
