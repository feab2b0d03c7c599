"""Text a spreadsheet would run as a formula, made inert: the one rule every CSV and XLSX applies.

Hostnames come from pings and account names from the CRM, so a cell can hold
``=HYPERLINK("http://x","y")`` or ``+cmd|' /C calc'!A0``, which Excel, LibreOffice and Google
Sheets run when a CSM opens the download ("CSV injection"). A text cell that starts with a
character they read as the start of a formula gets a leading apostrophe: they then show it as
text and never evaluate it, and openpyxl (XLSX) writes it as a string cell, not a formula (it
takes any string beginning with ``=`` for one). Numbers and dates are not text and pass as they
are, so figures stay figures. ``scoring.exports`` (health and instance-type CSVs) and the page
downloads (``usage_portal.web.kit.exports``) all write through ``safe_cell``.
"""

from __future__ import annotations

import re

#: What a spreadsheet takes for the start of a formula (OWASP's list): ``=``, ``+``, ``-``, ``@``,
#: and a tab or line break before them (some readers skip it, then see the formula). The
#: full-width forms too: Excel under East Asian locales reads ``＝1+1`` as ``=1+1``.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")

# A signed number written as text ("-3", "+2.5", "-1,200", "-12%") runs nothing: a spreadsheet
# reads it as the number, so it is left readable. "-2+3" is a formula and does not match.
_SIGNED_NUMBER = re.compile(r"[+-](\d[\d,]*(\.\d+)?|\.\d+)%?")


def safe_cell(value):
    """``value`` as it may go into a spreadsheet cell: formula-like text quoted, else unchanged."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_PREFIXES)
        and not _SIGNED_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value
