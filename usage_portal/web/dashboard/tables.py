"""The dashboard table, and the column types every report shares (pills, numbers, dates).

Columns that show HTML in the page (pills) are left out of exports; hidden columns carry the same
figures as plain numbers and words, so a CSV or XLSX export is ready for a spreadsheet.
"""

from __future__ import annotations

import functools
from datetime import datetime

import django_tables2 as tables
import django_tables2.utils
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.paginator import Paginator
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.urls import reverse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe
from django_tables2.rows import BoundRows

from accounts.models import Company

COLORS = ("Red", "Yellow", "Green", "NA")


# django-tables2 inspects the signature of a column's render/value method for every cell
# (``utils.call_with_appropriate``): a third of a 50-row dashboard's rendering time. Signatures
# of the same function never change, so they are cached per function (bounded by the code).
_uncached_signature = django_tables2.utils.signature


@functools.cache
def _function_signature(function):
    return _uncached_signature(function)


def _signature(fn):
    function = getattr(fn, "__func__", None)
    if function is None:
        return _uncached_signature(fn)
    args, kwargs_name = _function_signature(function)
    return args[1:], kwargs_name  # a bound method's first argument is bound


def install_signature_cache() -> None:
    """Called once from ``ScoringConfig.ready``."""
    django_tables2.utils.signature = _signature


NA_TITLE = "Not available: the account's scorecard says why"
NUM = {"td": {"class": "num"}, "th": {"class": "num"}}


class TwoStepPaginator(Paginator):
    """Fetch a page's primary keys first, then its rows: select-list subqueries run for one page.

    With ``OFFSET``, PostgreSQL evaluates every select-list subquery (instance counts, latest
    pings) for each skipped row, so page 100 of 5,000 accounts would cost 5,000 rows of them.
    The keys query computes only the sort key; the rows query, ``pk IN (…)``, 50 rows. Always
    two queries per page, whatever the book's size. Data that is not a queryset pages as usual.
    """

    def page(self, number):
        rows = self.object_list
        queryset = getattr(getattr(rows, "data", None), "data", None)
        if not isinstance(queryset, QuerySet):
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        keys = list(queryset.values_list("pk", flat=True)[bottom:top])
        records = {record.pk: record for record in queryset.filter(pk__in=keys)} if keys else {}
        page_rows = BoundRows(
            data=[records[key] for key in keys if key in records],
            table=rows.table,
            pinned_data=rows.pinned_data,
        )
        return self._get_page(page_rows, number, self)


def pill(color: str | None, text: object = None, *, title: str = "") -> str:
    """A colour pill; an unknown or missing colour is NA."""
    color = color if color in COLORS else "NA"
    if text is None and not title:
        return _PLAIN_PILLS[color]
    title = title or (NA_TITLE if color == "NA" else color)
    shown = color if text is None else text
    if text is not None and str(text) != color:
        return format_html(
            '<span class="pill pill-{}" title="{}">{}<span class="visually-hidden"> ({})</span>'
            "</span>",
            color,
            title,
            shown,
            color,
        )
    return format_html('<span class="pill pill-{}" title="{}">{}</span>', color, title, shown)


# The four plain pills, built once: a dashboard page shows hundreds of them.
_PLAIN_PILLS = {
    color: format_html(
        '<span class="pill pill-{}" title="{}">{}</span>',
        color,
        NA_TITLE if color == "NA" else color,
        color,
    )
    for color in COLORS
}


def percent(fraction: float | None) -> str:
    """``0.4`` → ``"40.0%"``, ``0.4237`` → ``"42.4%"``."""
    if fraction is None:
        return "NA"
    return f"{fraction * 100:.1f}%"


def nulls_last(field: str, is_descending: bool):
    expression = F(field)
    return expression.desc(nulls_last=True) if is_descending else expression.asc(nulls_last=True)


def color_rank(field: str) -> Case:
    """Red first, then Yellow, Green, NA: ascending order puts what needs attention on top."""
    return Case(
        *(When(**{field: color}, then=Value(rank)) for rank, color in enumerate(COLORS[:3])),
        default=Value(len(COLORS)),
        output_field=IntegerField(),
    )


class NullsLastMixin:
    """Sort on the accessor with NULLs last in both directions, then on ``tiebreak``.

    ``tiebreak`` keeps paging stable; use a grouped field (not ``pk``) on aggregated rows.
    """

    def __init__(self, *args, tiebreak: str = "pk", **kwargs):
        self.tiebreak = tiebreak
        super().__init__(*args, **kwargs)

    def order(self, queryset, is_descending):
        return queryset.order_by(nulls_last(str(self.accessor), is_descending), self.tiebreak), True


class NumberColumn(NullsLastMixin, tables.Column):
    """A right-aligned whole number with thousands separators; sorts with NULLs last."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", NUM)
        super().__init__(*args, **kwargs)

    def render(self, value):
        # f"{:,}" rather than humanize's intcomma: same output here, a tenth of the cost per cell.
        return f"{value:,}" if isinstance(value, int) else intcomma(value)

    def value(self, value):
        return value


class ColorColumn(tables.Column):
    """A measure's colour as a pill (NA when there is none); sorts Red → Yellow → Green → NA."""

    empty_values = ()

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", {"td": {"class": "color"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        return pill(value)

    def value(self, value):
        return value or "NA"

    def order(self, queryset, is_descending):
        rank = color_rank(str(self.accessor))
        return queryset.order_by(rank.desc() if is_descending else rank.asc(), "name", "pk"), True


def as_date(value):
    """The calendar date of a date or an aware datetime (in the current time zone, UTC)."""
    if isinstance(value, datetime):
        return timezone.localtime(value).date()
    return value


class DateColumn(NullsLastMixin, tables.Column):
    """An ISO date (unambiguous for every reader and every spreadsheet); NULLs sort last.

    Formatted in Python: django-tables2's own DateColumn renders a template per cell.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("attrs", {"td": {"class": "date"}})
        super().__init__(*args, **kwargs)

    def render(self, value):
        return as_date(value).isoformat()

    def value(self, value):
        return as_date(value)


class CsmColumn(tables.Column):
    def __init__(self, *args, accessor="csm", **kwargs):
        prefix = f"{accessor}__"
        kwargs.setdefault("verbose_name", "CSM")
        kwargs.setdefault(
            "order_by", (f"{prefix}first_name", f"{prefix}last_name", f"{prefix}username")
        )
        super().__init__(*args, accessor=accessor, **kwargs)

    def render(self, value):
        return value.get_full_name() or value.get_username()

    def value(self, value):
        return self.render(value) if value else ""


def account_link(record_pk_field: str = "pk"):
    return lambda record: reverse("account_summary", args=[getattr(record, record_pk_field)])


class DashboardTable(tables.Table):
    name = tables.Column(verbose_name="Account", linkify=account_link())
    crm_account_id = tables.Column(verbose_name="CRM account id", visible=False)
    csm = CsmColumn()
    segment = tables.Column()
    licensed_seats = NumberColumn(verbose_name="Licensed seats")
    billable_users = NumberColumn(verbose_name="Billable users")
    license_utilization = tables.Column(
        verbose_name="License utilization",
        empty_values=(),
        attrs={"td": {"class": "num"}, "th": {"class": "num"}},
        exclude_from_export=True,
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
    product_usage = tables.Column(
        verbose_name="Product usage",
        accessor="product_usage_value",
        empty_values=(),
        attrs={"td": {"class": "num"}, "th": {"class": "num"}},
        exclude_from_export=True,
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

    def render_license_utilization(self, record):
        value = record.license_utilization
        return pill(record.lu_color, percent(value) if value is not None else "NA")

    def order_license_utilization(self, queryset, is_descending):
        return queryset.order_by(nulls_last("license_utilization", is_descending), "pk"), True

    def value_lu_percent(self, value):
        return None if value is None else round(value * 100, 1)

    def render_product_usage(self, record):
        value = record.product_usage_value
        text = "NA" if value is None else f"{value:.0f}"
        return pill(record.product_usage_color, text)

    def order_product_usage(self, queryset, is_descending):
        return queryset.order_by(nulls_last("product_usage_value", is_descending), "pk"), True

    def value_product_usage_value(self, value):
        return None if value is None else round(value, 1)

    renders_own_rows = True  # partials/table.html then loops over page_rows_html

    # The page's rows, rendered straight from the records. django-tables2's BoundRow/BoundCell
    # machinery cost ~80% of the dashboard's time for 50 rows x 18 cells; sorting, pagination,
    # headers and exports still go through django-tables2. Each visible column needs a cell
    # function here (a KeyError names a new column that lacks one), so cells follow the headers.
    def page_rows_html(self) -> list[str]:
        account_url = _account_url_maker()
        cells = {
            "name": lambda r: _cell(
                format_html('<a href="{}">{}</a>', account_url(r.pk), r.name) if r.name else None
            ),
            "csm": lambda r: _cell(
                conditional_escape(r.csm.get_full_name() or r.csm.get_username()) if r.csm else None
            ),
            "segment": lambda r: _cell(r.segment and conditional_escape(r.get_segment_display())),
            "licensed_seats": lambda r: _number(r.licensed_seats),
            "billable_users": lambda r: _number(r.billable_users),
            "license_utilization": lambda r: self.render_license_utilization(r),
            "product_usage": lambda r: self.render_product_usage(r),
            "last_ping_at": lambda r: _cell(
                as_date(r.last_ping_at).isoformat() if r.last_ping_at is not None else None
            ),
        }
        columns = []
        for column in self.columns:
            name = column.name
            if isinstance(column.column, ColorColumn) and name not in cells:
                accessor = str(column.accessor)
                cells[name] = lambda r, accessor=accessor: pill(getattr(r, accessor))
            elif isinstance(column.column, NumberColumn) and name not in cells:
                accessor = str(column.accessor)
                cells[name] = lambda r, accessor=accessor: _number(getattr(r, accessor))
            columns.append((f"<td {column.attrs['td'].as_html()}>", cells[name]))
        records = self.page.object_list.data if self.page else self.data
        return [
            mark_safe(
                f'<tr class="{"odd" if n % 2 else "even"}">'
                + "".join(f"{td}{render(record)}</td>" for td, render in columns)
                + "</tr>"
            )
            for n, record in enumerate(records)
        ]


EMPTY_CELL = "—"


def _cell(html):
    return EMPTY_CELL if html in (None, "") else html


def _number(value):
    if value is None or value == "":
        return EMPTY_CELL
    return f"{value:,}" if isinstance(value, int) else conditional_escape(intcomma(value))


def _account_url_maker():
    """``pk -> reverse("account_summary", args=[pk])``, reversing once (50 reverses: ~2 ms)."""
    head = reverse("account_summary", args=[0]).removesuffix("0/")
    return lambda pk: f"{head}{int(pk)}/"
