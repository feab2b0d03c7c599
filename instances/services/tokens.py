"""Ingest tokens: the bearer secrets GitLab instances send to the ping endpoints.

Only a secret's SHA-256 is stored; the secret itself is shown once, when the token is created.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from instances.models import IngestToken


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ingest_token_create(*, name: str, by=None) -> tuple[IngestToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored."""
    secret = "upt_" + secrets.token_urlsafe(32)
    token = IngestToken.objects.create(
        name=name,
        token_hash=_hash_token(secret),
        prefix=secret[:10],
        created_by=by if by is not None and by.is_authenticated else None,
    )
    return token, secret


def ingest_token_authenticate(secret: str) -> IngestToken | None:
    """The active (not revoked) token with this secret, or None. Marks it used."""
    if not secret:
        return None
    token = IngestToken.objects.filter(
        token_hash=_hash_token(secret), revoked_at__isnull=True
    ).first()
    if token is not None:
        now = timezone.now()
        # Touch at most once a minute: a busy sender should not cost a write per ping.
        if token.last_used_at is None or token.last_used_at < now - timedelta(minutes=1):
            IngestToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
