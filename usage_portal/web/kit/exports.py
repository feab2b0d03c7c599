"""The list pages' CSV and XLSX downloads: django-tables2's export, every cell spreadsheet-safe.

Account names, hostnames, versions and subscription names come from the CRM and from pings:
each header and cell goes through ``scoring.spreadsheet.safe_cell`` (the one rule the health and
instance-type CSVs follow too), so nothing in a download runs as a formula. In XLSX a quoted
text is a string cell (openpyxl writes only strings that begin with ``=`` as formulas).

Downloads are in UTC whoever asks for them (pages are in the reader's zone,
``usage_portal.web.timezones``): a file passed on reads the same for everyone.
"""

from __future__ import annotations

from datetime import UTC

from django.utils import timezone
from django_tables2.export import TableExport
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from scoring.spreadsheet import safe_cell


def _xlsx_text(value):
    # XLSX (XML 1.0) cannot hold C0 control characters; openpyxl refuses the whole file for
    # one, and a ping's hostname may carry one. Shown as U+FFFD, as clean_text shows NUL.
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


class SafeTableExport(TableExport):
    """``TableExport`` whose dataset holds only spreadsheet-safe cells, in every format."""

    def table_to_dataset(self, table, exclude_columns, dataset_kwargs=None):
        with timezone.override(UTC):
            dataset = super().table_to_dataset(table, exclude_columns, dataset_kwargs)
        clean = _xlsx_text if self.format == self.XLSX else (lambda value: value)
        if dataset.headers:
            dataset.headers = [safe_cell(clean(h)) for h in dataset.headers]
        for n in range(dataset.height):
            dataset[n] = [safe_cell(clean(v)) for v in dataset[n]]
        return dataset
