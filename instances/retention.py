"""Raw payload retention: parsed values are kept forever, the raw JSON for a configurable time."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import UsagePing


def raw_payloads_purge(*, now=None) -> int:
    """Clear raw payloads of pings received more than RAW_PAYLOAD_RETENTION_DAYS ago."""
    if settings.RAW_PAYLOAD_RETENTION_DAYS < 1:  # a setting overridden past the start-up check
        raise ValueError("RAW_PAYLOAD_RETENTION_DAYS must be at least 1: nothing purged")
    cutoff = (now or timezone.now()) - timedelta(days=settings.RAW_PAYLOAD_RETENTION_DAYS)
    return UsagePing.objects.filter(received_at__lt=cutoff, raw_payload__isnull=False).update(
        raw_payload=None
    )
