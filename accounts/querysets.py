"""Who may see and change which accounts: the one place the ownership rules live."""

from django.db import models


def can_edit_any(user) -> bool:
    return user.is_active and user.has_perm("accounts.edit_any_account")


def can_edit(user, company) -> bool:
    """Whether ``user`` may change ``company``: ``editable_by``'s rule for one loaded account,
    without a query (the permissions come from the user's cache)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if can_edit_any(user):
        return True
    return company.csm_id == user.pk and user.has_perm("accounts.set_sentiment")


class CompanyQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(csm=user)

    def editable_by(self, user):
        """Accounts whose labels and sentiment ``user`` may change (ops: all; CSM: their own)."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if can_edit_any(user):
            return self
        if user.has_perm("accounts.set_sentiment"):
            return self.filter(csm=user)
        return self.none()


class SubscriptionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status="active")
