"""The Product Usage Reporting dashboard: every account in one sortable, filterable table.

Each person chooses the columns the page shows (``dashboard_columns``, remembered in
``accounts.TableColumns``: one query per page, whatever its size); exports carry every column.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.models import TableColumns
from usage_portal.web.dashboard.filters import COLOR_FILTERS, DashboardFilter
from usage_portal.web.dashboard.forms import ColumnsForm
from usage_portal.web.dashboard.selectors import dashboard_accounts
from usage_portal.web.dashboard.tables import CHOOSABLE_COLUMNS, DEFAULT_COLUMNS, DashboardTable
from usage_portal.web.kit.views import CsmDefaultFilterView

#: The dashboard's key in ``TableColumns``.
TABLE = "dashboard"


class DashboardView(CsmDefaultFilterView):
    model = None
    table_class = DashboardTable
    filterset_class = DashboardFilter
    template_name = "scoring/dashboard.html"
    export_name = "product-usage-dashboard"
    nav = "dashboard"

    def get_queryset(self):
        return dashboard_accounts()

    def shown_columns(self) -> list[str]:
        """The columns this person chose, else the defaults (read once per request)."""
        if not hasattr(self, "_shown"):
            chosen = TableColumns.chosen(user=self.request.user, table=TABLE)
            self._shown = list(DEFAULT_COLUMNS) if chosen is None else chosen
        return self._shown

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        shown = set(self.shown_columns())
        # Hidden, not excluded: an export still carries every column.
        for name in CHOOSABLE_COLUMNS:
            if name not in shown:
                table.columns.hide(name)
        return table

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        shown = self.shown_columns()
        context.update(
            color_filters=COLOR_FILTERS,
            columns_form=ColumnsForm(
                initial={"columns": shown, "next": self.request.get_full_path()}
            ),
            columns_shown=len(shown) + 1,  # the account's name is always there
            columns_total=len(CHOOSABLE_COLUMNS) + 1,
        )
        return context


dashboard = DashboardView.as_view()


@require_POST
def dashboard_columns(request: HttpRequest) -> HttpResponse:
    """Remember the columns the signed-in person chose (or the defaults, with ``reset``)."""
    form = ColumnsForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "400.html",
            {"reason": "Those columns are not on the dashboard. Reload it and choose again."},
            status=400,
        )
    columns = None if request.POST.get("reset") else form.chosen()
    TableColumns.remember(user=request.user, table=TABLE, columns=columns)
    back = form.cleaned_data["next"]
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)
    return redirect("dashboard")
