"""Reusable reads over accounts; who may change which is ``accounts.permissions``."""

from collections.abc import Iterable

from django.db import connection, models
from django.utils import timezone

from accounts import permissions


class CompanyQuerySet(models.QuerySet):
    def touch(self) -> int:
        """Mark these accounts' data as changed (their instances, pings, labels or scores).

        ``updated_at`` is the version of an account's cached C360 parts (``accounts.fragments``):
        every write that changes what those pages show calls this in its own transaction. Their
        ids are read, then ``touch_ids`` locks the rows in id order, as scoring locks them, so
        concurrent writers cannot deadlock on several accounts. ``no_key``: a writer that
        inserted rows pointing at the account (monthly rows, scores) holds a KEY SHARE lock on
        it once its foreign keys are checked (at commit, or at once with immediate
        constraints), which FOR UPDATE would wait on: two such writers would deadlock.
        """
        return self.model.objects.touch_ids(self.values_list("id", flat=True))

    def touch_ids(self, ids: Iterable[int]) -> int:
        """``touch`` the accounts with these ids (call it on the manager), in one statement.

        On PostgreSQL the subquery locks the rows in id order and the UPDATE follows, in one
        round trip and without the ORM, which cost 0.54 ms of CPU against 0.07 (three accounts,
        measured) on every batch of pings. One statement needs no transaction of its own.
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            return 0
        now = timezone.now()
        if connection.vendor != "postgresql":  # SQLite writes one transaction at a time
            return self.model.objects.filter(id__in=ids).update(updated_at=now)
        table = connection.ops.quote_name(self.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET updated_at = %s WHERE id IN (SELECT id FROM {table} "
                "WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE)",
                [now, ids],
            )
            return cursor.rowcount

    def editable_by(self, user, perm: str = permissions.LABEL):
        """Accounts on which ``user`` may make a ``perm`` kind of change: ``permissions``' rule
        as a filter (ops: all; a CSM with that permission: their own; anyone else: none)."""
        if permissions.can_edit_any(user):
            return self
        if permissions.owns_accounts(user) and user.has_perm(perm):
            return self.filter(csm=user)
        return self.none()


class SubscriptionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status="active")
