"""The portal's list view: filtered, sorted, paginated, exportable, "my accounts" by default.

Shared by the dashboard and the instance reports.
"""

from __future__ import annotations

from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from accounts.permissions import owns_accounts
from usage_portal.web.kit.filters import with_csm_default
from usage_portal.web.kit.streaming import FORMATS, streamed_export
from usage_portal.web.kit.tables import TwoStepPaginator


class CsmDefaultFilterView(SingleTableMixin, FilterView):
    """A filtered, sortable, paginated, exportable list whose CSM filter defaults to "me".

    Subclasses set ``nav`` (the left navigation entry), ``export_name`` (the download's file
    name) and the usual ``table_class``/``filterset_class``/``template_name``.

    ``?_export=csv`` or ``xlsx`` downloads every row the filters keep, in the page's sort, with
    every column but those left out of exports (``exclude_from_export``, ``exclude_columns``):
    django-tables2's export values, streamed (``kit.streaming``), whatever the book's size.
    """

    export_formats = FORMATS  # the downloads the page offers, both streamed
    export_trigger_param = "_export"  # the name django-tables2's {% export_url %} reads
    exclude_columns: tuple[str, ...] = ()
    export_name = "table"
    table_pagination = {"per_page": 50, "paginator_class": TwoStepPaginator}
    nav = ""
    _exporting = False

    def get(self, request, *args, **kwargs):
        export_format = request.GET.get(self.export_trigger_param)
        if export_format in self.export_formats:
            return self.export(export_format)
        return super().get(request, *args, **kwargs)

    def export(self, export_format: str):
        """The download: the page's filters and sort, none of the page's work (its count, its
        page of rows, its charts). Other ``_export`` values show the page."""
        self.filterset = self.get_filterset(self.get_filterset_class())
        # As FilterView.get: filters that cannot be used list nothing (strict).
        if not self.filterset.is_bound or self.filterset.is_valid() or not self.get_strict():
            self.object_list = self.filterset.qs
        else:
            self.object_list = self.filterset.queryset.none()
        self._exporting = True
        return streamed_export(
            export_format,
            self.get_table(**self.get_table_kwargs()),
            filename=self.get_export_filename(export_format),
            exclude_columns=self.exclude_columns,
        )

    def get_table_pagination(self, table):
        # A download carries every row: no page (and none of the paginator's queries).
        return False if self._exporting else super().get_table_pagination(table)

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
