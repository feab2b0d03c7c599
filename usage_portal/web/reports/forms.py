"""The data-quality report's form: map a license to a subscription, or correct its mapping."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from accounts.models import Subscription
from instances.models import License


class LicenseMapForm(forms.Form):
    subscription = forms.CharField(
        label="Subscription",
        max_length=64,
        help_text="The Zuora subscription name from the account's Salesforce record "
        "(e.g. A-S00012345), or its Usage Portal id.",
    )

    def __init__(self, *args, license: License, **kwargs):
        super().__init__(*args, **kwargs)
        self.license = license

    def clean_subscription(self) -> Subscription:
        value = self.cleaned_data["subscription"].strip()
        query = Q(name__iexact=value)
        if value.isdigit():
            query |= Q(pk=int(value))
        match = list(Subscription.objects.filter(query).select_related("company")[:2])
        if not match:
            raise forms.ValidationError(
                f"No subscription is named “{value}”. Use the subscription name from the "
                "account's Salesforce record (it looks like A-S00012345); if the subscription "
                "is new, import it first."
            )
        exact = [s for s in match if s.name == value or str(s.pk) == value]
        return (exact or match)[0]

    def clean(self):
        cleaned = super().clean()
        subscription = cleaned.get("subscription")
        if subscription is not None and subscription.pk == self.license.subscription_id:
            raise forms.ValidationError(
                f"This license is already mapped to {subscription.name}; its pings are "
                "attached. To correct the mapping, enter the right subscription."
            )
        return cleaned
