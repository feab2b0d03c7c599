"""The portal's list view: filtered, sorted, paginated, exportable, "my accounts" by default.

Shared by the dashboard and the instance reports.
"""

from __future__ import annotations

from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export.views import ExportMixin

from accounts.permissions import owns_accounts
from usage_portal.web.kit.exports import SafeTableExport
from usage_portal.web.kit.filters import with_csm_default
from usage_portal.web.kit.tables import TwoStepPaginator

EXPORT_FORMATS = ("csv", "xlsx")


class CsmDefaultFilterView(ExportMixin, SingleTableMixin, FilterView):
    """A filtered, sortable, paginated, exportable list whose CSM filter defaults to "me".

    Subclasses set ``nav`` (the left navigation entry), ``export_name`` (the download's file
    name) and the usual ``table_class``/``filterset_class``/``template_name``.
    """

    export_formats = EXPORT_FORMATS
    # Every download's cells made spreadsheet-safe: names and hostnames come from outside.
    export_class = SafeTableExport
    table_pagination = {"per_page": 50, "paginator_class": TwoStepPaginator}
    nav = ""

    def get_filterset_kwargs(self, filterset_class):
        kwargs = super().get_filterset_kwargs(filterset_class)
        kwargs["data"] = with_csm_default(self.request.GET, self.request.user)
        return kwargs

    def get_export_filename(self, export_format):
        return f"{self.export_name}.{export_format}"

    def filters_invalid(self) -> bool:
        """A filter was given a value it cannot use: the list is empty until it is corrected."""
        return self.filterset.is_bound and not self.filterset.is_valid()

    def get_table(self, **kwargs):
        table = super().get_table(**kwargs)
        if self.filters_invalid():
            table.empty_text = "Nothing is listed until the filters above are corrected."
        return table

    def scope_url(self, csm: str) -> str:
        """This list for another CSM scope ("me" or every account), keeping the other filters
        and the sort; paging starts again."""
        params = self.request.GET.copy()
        for name in ("page", "_export", "csm"):
            params.pop(name, None)
        params["csm"] = csm
        return f"?{params.urlencode()}"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        data = self.filterset.data
        user = self.request.user
        table = context["table"]
        # An empty page is falsy (a Page is a sequence): compare with None, or "0 accounts"
        # would read "0 account".
        count = table.paginator.count if table.page is not None else len(table.rows)
        context.update(
            nav=self.nav,
            export_formats=self.export_formats,
            is_csm=owns_accounts(user),
            showing_mine=data.get("csm") == str(user.pk),
            filtered_count=count,
            filters_invalid=self.filters_invalid(),
            mine_url=self.scope_url(str(user.pk)),
            all_url=self.scope_url(""),
        )
        return context
