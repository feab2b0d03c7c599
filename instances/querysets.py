"""Reusable reads over instances, pings and label changes."""

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
    def unmapped(self):
        return self.filter(subscription__isnull=True)


class LabelChangeQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status="pending")

    def due(self, now=None):
        return self.pending().filter(effective_at__lte=now or timezone.now())
