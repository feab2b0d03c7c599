"""Who may see and change which accounts: the one place the ownership rules live."""

from django.db import models, transaction
from django.utils import timezone


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
    def touch(self) -> int:
        """Mark these accounts' data as changed (their instances, pings, labels or scores).

        ``updated_at`` is the version of an account's cached C360 parts (``accounts.fragments``):
        every write that changes what those pages show calls this in its own transaction. Rows
        are locked in id order first, as scoring locks them, so concurrent writers cannot
        deadlock on several accounts. ``no_key``: a writer that inserted rows pointing at the
        account (monthly rows, scores) holds a KEY SHARE lock on it once its foreign keys are
        checked (at commit, or at once with immediate constraints), which FOR UPDATE would wait
        on: two such writers would deadlock.
        """
        with transaction.atomic():
            rows = self.select_for_update(no_key=True).order_by("id")
            ids = list(rows.values_list("id", flat=True))
            if not ids:
                return 0
            return self.model.objects.filter(id__in=ids).update(updated_at=timezone.now())

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
