"""The portal's django-filter kit: the base filter set, the CSM filter and its "me" default.

A CSM lands on their own accounts on every list (``with_csm_default``); the ``csm`` filter lists
the people who own accounts, the signed-in one as "(me)"; colour filters treat a missing score as
NA; tick boxes narrow a list only when ticked.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q

from accounts.models import Company
from accounts.permissions import owns_accounts

COLOR_CHOICES = (("Red", "Red"), ("Yellow", "Yellow"), ("Green", "Green"), ("NA", "NA"))

#: Query parameters that sort, page or export a list rather than filter it.
NOT_FILTERS = frozenset({"sort", "page", "per_page", "_export"})


def csm_choices(user=None):
    """People who own at least one account (and ``user``, when a CSM), in one small query."""
    owners = Q(Exists(Company.objects.filter(csm=OuterRef("pk"))))
    if user is not None and owns_accounts(user):
        owners |= Q(pk=user.pk)
    users = (
        get_user_model()
        .objects.filter(owners)
        .order_by("first_name", "last_name", "username")
        .only("pk", "username", "first_name", "last_name")
    )
    choices = []
    for person in users:
        name = person.get_full_name() or person.username
        choices.append((str(person.pk), f"{name} (me)" if user and person.pk == user.pk else name))
    return [*choices, ("none", "No CSM (unowned)")]


class PortalFilterSet(django_filters.FilterSet):
    """Base of the portal's filter sets.

    ``secondary_fields`` fold under "more filters" in ``partials/filter_form.html``. A ``csm``
    filter lists the signed-in person as "(me)".
    """

    secondary_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "csm" in self.filters:
            user = getattr(self.request, "user", None)
            # A list, not a callable: Django would re-run a callable at every iteration.
            self.filters["csm"].extra["choices"] = csm_choices(user)

    @property
    def secondary_active(self) -> bool:
        return any(self.data.get(name) for name in self.secondary_fields)


def with_csm_default(data, user, field: str = "csm"):
    """``data`` (a QueryDict) with the CSM filter set to ``user`` when no filter was given.

    A CSM lands on their own accounts; choosing "All CSMs" sends ``csm=`` (empty), which is a
    choice, so the default no longer applies. Sorting and paging parameters are not filters.
    """
    data = data.copy()
    if owns_accounts(user) and field not in data and not (set(data) - NOT_FILTERS):
        data[field] = str(user.pk)
    return data


class CsmFilter(django_filters.ChoiceFilter):
    """Filter on the account's CSM: a user id, ``none`` for unowned accounts, empty for all."""

    def __init__(self, *args, company_path: str = "", **kwargs):
        self.company_path = company_path
        kwargs.setdefault("label", "CSM")
        kwargs.setdefault("empty_label", "All CSMs")
        kwargs.setdefault("choices", csm_choices)
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value in ("", None):
            return qs
        if value == "none":
            return qs.filter(**{f"{self.company_path}csm__isnull": True})
        return qs.filter(**{f"{self.company_path}csm_id": value})


def color_filter(annotation: str, label: str) -> django_filters.ChoiceFilter:
    """Filter on a measure's colour; NA also matches a row with no score at all."""

    def apply(queryset, name, value):
        if value == "NA":
            # NA: the measure is NA, or there is no snapshot at all.
            return queryset.filter(Q(**{annotation: "NA"}) | Q(**{f"{annotation}__isnull": True}))
        return queryset.filter(**{annotation: value})

    return django_filters.ChoiceFilter(
        label=label, choices=COLOR_CHOICES, empty_label="Any", method=apply
    )


def checkbox_filter(
    label: str, method: str, *, help_text: str = ""
) -> django_filters.BooleanFilter:
    """A tick box: ticked narrows the list, unticked leaves it alone."""
    return django_filters.BooleanFilter(
        label=label, method=method, widget=forms.CheckboxInput, help_text=help_text
    )
