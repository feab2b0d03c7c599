"""Reusable reads over instances, pings and label changes."""

from collections.abc import Iterable
from datetime import timedelta

from django.db import models
from django.utils import timezone

from scoring import methodology


class InstanceQuerySet(models.QuerySet):
    def production(self):
        return self.filter(instance_type="production")

    def health_eligible(self):
        """Instances whose applied labels let them into health measures: the engine's rule
        (``scoring.methodology.health_exclusion``) as a filter, built from its constants."""
        production = models.Q(instance_type=methodology.PRODUCTION) | models.Q(
            kind="saas", instance_type__in=methodology.SAAS_PRODUCTION_TYPES
        )
        return self.filter(production).exclude(health_inclusion=methodology.OPT_OUT)

    def unknown(self):
        return self.filter(instance_type="unknown")

    def stale(self, days: int):
        """Silent for more than ``days`` (the active scheme's ``stale_ping_days``)."""
        return self.filter(last_ping_at__lt=timezone.now() - timedelta(days=days))


class UsagePingQuerySet(models.QuerySet):
    def latest_of(self, instance_ids: Iterable[int], *fields: str) -> dict[int, dict]:
        """Each instance's newest ping (``Instance.last_ping_at``), as dicts of ``fields``; one
        query.

        An exact (instance, recorded_at) lookup per instance through the ping index: matching a
        list of ids against a list of timestamps instead made PostgreSQL scan every ping.
        """
        ids = list(instance_ids)
        if not ids:
            return {}
        instances = self.model._meta.get_field("instance").related_model.objects
        newest = self.model.objects.filter(
            instance_id=models.OuterRef("pk"), recorded_at=models.OuterRef("last_ping_at")
        ).values("id")[:1]
        ping_ids = instances.filter(id__in=ids).values(ping_id=models.Subquery(newest))
        rows = self.filter(id__in=ping_ids).values("instance_id", *fields)
        return {r["instance_id"]: r for r in rows}

    def unmapped(self):
        return self.filter(subscription__isnull=True)


class LabelChangeQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status="pending")

    def due(self, now=None):
        return self.pending().filter(effective_at__lte=now or timezone.now())
