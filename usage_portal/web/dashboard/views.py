"""The Product Usage Reporting dashboard: every account in one sortable, filterable table."""

from __future__ import annotations

from usage_portal.web.dashboard.filters import COLOR_FILTERS, DashboardFilter
from usage_portal.web.dashboard.selectors import dashboard_accounts
from usage_portal.web.dashboard.tables import DashboardTable
from usage_portal.web.kit.views import CsmDefaultFilterView


class DashboardView(CsmDefaultFilterView):
    model = None
    table_class = DashboardTable
    filterset_class = DashboardFilter
    template_name = "scoring/dashboard.html"
    export_name = "product-usage-dashboard"
    nav = "dashboard"

    def get_queryset(self):
        return dashboard_accounts()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["color_filters"] = COLOR_FILTERS
        return context


dashboard = DashboardView.as_view()
