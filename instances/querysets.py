"""Reusable reads over instances, pings and label changes."""

from datetime import timedelta

from django.db import models
from django.utils import timezone


class InstanceQuerySet(models.QuerySet):
    def production(self):
        return self.filter(instance_type="production")

    def in_health(self):
        """Applied Production and not Opt-Out: the instances health measures may use."""
        return self.production().exclude(health_inclusion="opt_out")

    def unknown(self):
        return self.filter(instance_type="unknown")

    def stale(self, days: int = 60):
        return self.filter(last_ping_at__lt=timezone.now() - timedelta(days=days))


class UsagePingQuerySet(models.QuerySet):
    def unmapped(self):
        return self.filter(subscription__isnull=True)


class LabelChangeQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status="pending")

    def due(self, now=None):
        return self.pending().filter(effective_at__lte=now or timezone.now())
