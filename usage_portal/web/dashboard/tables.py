"""The dashboard table: one row per account, its scorecard's figures and its instance counts.

Each column is declared once, here. The page's rows are built straight from the records by the
kit's ``OwnRowsTable`` (each column's ``cell_function``), which renders exactly what
django-tables2 would at a fraction of the cost; sorting, pagination, headers and the CSV/XLSX
exports go through django-tables2. Pills are left out of exports; hidden columns carry the same
figures as plain numbers and words.
"""

from __future__ import annotations

import django_tables2 as tables

from accounts.models import Company
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


class DashboardTable(OwnRowsTable):
    name = AccountColumn()
    crm_account_id = tables.Column(verbose_name="CRM account id", visible=False)
    csm = CsmColumn()
    segment = TextColumn()
    licensed_seats = NumberColumn(verbose_name="Licensed seats")
    billable_users = NumberColumn(verbose_name="Billable users")
    license_utilization = PillColumn(
        verbose_name="License utilization", color="lu_color", text=percent
    )
    lu_percent = tables.Column(
        verbose_name="License utilization (%)", accessor="license_utilization", visible=False
    )
    lu_color = ColorColumn(verbose_name="License utilization colour", visible=False)
    ue_color = ColorColumn(verbose_name="User Engagement")
    scm_color = ColorColumn(verbose_name="SCM")
    ci_color = ColorColumn(verbose_name="CI")
    cd_color = ColorColumn(verbose_name="CD")
    devsecops_color = ColorColumn(verbose_name="DevSecOps")
    product_usage = PillColumn(
        verbose_name="Product usage",
        accessor="product_usage_value",
        color="product_usage_color",
        text=whole,
    )
    product_usage_value = tables.Column(verbose_name="Product usage score", visible=False)
    product_usage_color = ColorColumn(verbose_name="Product usage colour", visible=False)
    overall_color = ColorColumn(verbose_name="Overall health")
    last_ping_at = DateColumn(verbose_name="Last ping")
    n_production = NumberColumn(verbose_name="Production")
    n_non_production = NumberColumn(verbose_name="Non-Prod")
    n_unknown = NumberColumn(verbose_name="Unknown")
    n_other = NumberColumn(verbose_name="Other")

    class Meta:
        model = Company
        fields = ()
        order_by = ("name",)
        empty_text = "No accounts match these filters."
        attrs = {"class": "table table-report table-dashboard"}

    # Exports: hidden columns, plain figures.
    def value_lu_percent(self, value):
        return None if value is None else round(value * 100, 1)

    def value_product_usage_value(self, value):
        return None if value is None else round(value, 1)
