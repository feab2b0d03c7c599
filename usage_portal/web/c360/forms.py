"""Forms of the Account C360 pages: CSM sentiment, the success-plan ROI and an instance's labels.

They validate only: the views write, through the services (``accounts.services.sentiment_set``,
``instances.labels.label_change_request``).
"""

from __future__ import annotations

from collections.abc import Mapping

from django import forms

from accounts.models import Sentiment
from instances.models import HealthInclusion, Instance, InstanceType, LabelChange, LabelField

LABEL_FIELDS = (LabelField.INSTANCE_TYPE, LabelField.HEALTH_INCLUSION)

HEALTH_INCLUSION_CHOICES = (
    (HealthInclusion.AUTOMATIC.value, "Automatic (Production counts)"),
    (HealthInclusion.INCLUDED.value, "Included in Health Score"),
    (HealthInclusion.OPT_OUT.value, "Opt-Out"),
)


def _colour(label: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        label=label,
        choices=Sentiment.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose Red, Yellow or Green."},
    )


def _note(help_text: str, *, rows: int, shown_with: str) -> forms.CharField:
    return forms.CharField(
        label="Note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": rows}),
        help_text=help_text,
        error_messages={"required": f"Add a note saying why; it is shown with the {shown_with}."},
    )


class SentimentForm(forms.Form):
    sentiment = _colour("CSM sentiment")
    note = _note(
        "Why this sentiment: shown with your name and the date. A Red sentiment makes overall "
        "health Red; sentiment older than 90 days is flagged stale.",
        rows=3,
        shown_with="sentiment",
    )


class RoiForm(forms.Form):
    """The success plan's ROI (Outcomes, 10 % of overall health)."""

    prefix = "roi"
    roi = _colour("Success-plan ROI")
    note = _note(
        "What the customer got from the success plan's objectives so far.",
        rows=2,
        shown_with="ROI",
    )


class InstanceLabelForm(forms.Form):
    """Instance type and health inclusion, starting from what the instance will be once any
    pending change applies; ``changes()`` are the fields to request a label change for."""

    instance_type = forms.ChoiceField(
        label="Instance Type",
        choices=InstanceType.choices,
        # The edit page is reached from ⋮ → Edit: start the keyboard on its first field.
        widget=forms.Select(attrs={"autofocus": True}),
        help_text="Unknown is a temporary holding value: label it Production, Non-Production, "
        "Obsolete or Geo Secondary Node.",
    )
    health_inclusion = forms.ChoiceField(
        label="Included in Health Measure",
        choices=HEALTH_INCLUSION_CHOICES,
        required=False,
        help_text="Keep exactly one instance in health measures: choose Opt-Out (not "
        "Automatic) for the others.",
    )

    def __init__(
        self,
        *args,
        instance: Instance,
        pending: Mapping[str, LabelChange] | None = None,
        **kwargs,
    ):
        self.instance = instance
        pending = pending or {}
        self.intended = {
            name: pending[name].new_value if name in pending else getattr(instance, name)
            for name in LABEL_FIELDS
        }
        kwargs.setdefault("initial", dict(self.intended))
        # Several of these forms share a page (one per row): keep their element ids apart.
        kwargs.setdefault("auto_id", f"id_instance{instance.pk}_%s")
        super().__init__(*args, **kwargs)

    def changes(self) -> list[tuple[str, str]]:
        """``(field, value)`` for each field that differs from the intended value (valid form)."""
        wanted = ((name, self.cleaned_data[name] or "") for name in LABEL_FIELDS)
        return [(name, value) for name, value in wanted if value != self.intended[name]]
