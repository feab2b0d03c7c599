"""What goes in a cell of the list pages' CSV and XLSX downloads: every cell spreadsheet-safe.

The downloads themselves are written, and streamed, by ``usage_portal.web.kit.streaming``.

Account names, hostnames, versions and subscription names come from the CRM and from pings:
each header and cell goes through ``scoring.spreadsheet.safe_cell`` (the one rule the health and
instance-type CSVs follow too), so nothing in a download runs as a formula. In XLSX every text
is a string cell, never a formula, and holds no character XML 1.0 cannot.

Downloads are in UTC whoever asks for them (pages are in the reader's zone,
``usage_portal.web.timezones``): a file passed on reads the same for everyone.
"""

from __future__ import annotations

from django_tables2.export import TableExport
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from scoring.spreadsheet import safe_cell


def _xlsx_text(value):
    # XLSX (XML 1.0) cannot hold C0 control characters: a reader (openpyxl, Excel) refuses the
    # whole file for one, and a ping's hostname may carry one. Shown as U+FFFD, as clean_text
    # shows NUL.
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return value


def export_cell(value, export_format: str):
    """A header or cell as a download in ``export_format`` carries it (the one rule for both)."""
    if export_format == TableExport.XLSX:
        value = _xlsx_text(value)
    return safe_cell(value)
