"""The profile's time zone choice: the browser's zone (no choice), UTC, or a place by region."""

from __future__ import annotations

from django import forms

from accounts.zones import zone_groups, zone_named

BROWSER = ""  # the choice "use my browser's zone": nothing stored


def _browser_label(browser_zone: str) -> str:
    if browser_zone:
        return f"Use my browser's zone ({browser_zone})"
    return "Use my browser's zone (not known yet: UTC until it is)"


class TimeZoneForm(forms.Form):
    """One select, grouped by region (a select is searchable by typing); the first choice,
    the default, names the zone the browser reported."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Every page shows times in this zone, with its abbreviation.",
        error_messages={
            "invalid_choice": "“%(value)s” is not a time zone the portal knows: "
            "choose one from the list."
        },
    )

    def __init__(self, *args, browser_zone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [
            (BROWSER, _browser_label(browser_zone)),
            ("UTC", "UTC"),
            *((region, list(zones)) for region, zones in zone_groups()),
        ]

    def clean_time_zone(self) -> str:
        name = self.cleaned_data["time_zone"]
        # The choices hold only known zones; this says so again where the rule lives.
        if name != BROWSER and zone_named(name) is None:
            raise forms.ValidationError("That is not a time zone the portal knows.")
        return name
