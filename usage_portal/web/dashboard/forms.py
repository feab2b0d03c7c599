"""The dashboard's column chooser: which of the table's columns a person sees."""

from __future__ import annotations

import functools

from django import forms

from usage_portal.web.dashboard.tables import CHOOSABLE_COLUMNS, DashboardTable


@functools.cache
def _column_choices() -> list[tuple[str, str]]:
    # The headers the page shows, model fields' names included (Segment has no verbose_name).
    # Built once: a table's columns are deep-copied at each construction, the headers never
    # change while the code runs.
    columns = DashboardTable([]).columns
    return [(name, str(columns[name].header)) for name in CHOOSABLE_COLUMNS]


class ColumnsForm(forms.Form):
    columns = forms.MultipleChoiceField(
        choices=_column_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Columns to show",
    )
    # Where to go back to: the dashboard with its filters (checked before it is followed).
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def chosen(self) -> list[str]:
        """The ticked columns in the table's order."""
        ticked = set(self.cleaned_data["columns"])
        return [name for name in CHOOSABLE_COLUMNS if name in ticked]
