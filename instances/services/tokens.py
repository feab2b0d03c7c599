"""Ingest tokens: the bearer secrets GitLab instances (``ingest``) and readers of the health API
(``read``) send.

Only a secret's SHA-256 is stored; the secret itself is shown once, when the token is created.
``ingest_token_authenticate`` is the one check of a presented secret: known, not revoked, not
expired, and holding the scope the endpoint needs. Creating and revoking are audited;
revoking is one-way and a token is never deleted (``IngestToken`` refuses both).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import AuditAction
from instances.models import IngestToken, TokenScope


class TokenRefused(Exception):
    """A presented secret that does not let its holder in: ``status`` 401 when it is unknown,
    revoked or expired (send another), 403 when it lacks the scope (this token never will)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ingest_token_create(
    *,
    name: str,
    by=None,
    scopes: Iterable[str] = (TokenScope.INGEST,),
    expires_at: datetime | None = None,
) -> tuple[IngestToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored.

    ``scopes``: ingest (the default: send pings), read (the health API), or both.
    """
    chosen = sorted({str(s) for s in scopes})
    unknown = set(chosen) - set(TokenScope.values)
    if not chosen or unknown:
        raise ValueError(f"scopes must be some of {TokenScope.values}, not {chosen}")
    secret = "upt_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = IngestToken.objects.create(
            name=name,
            token_hash=_hash_token(secret),
            prefix=secret[:10],
            scopes=chosen,
            expires_at=expires_at,
            created_by=by if by is not None and by.is_authenticated else None,
        )
        audit_record(
            actor=by,
            action=AuditAction.TOKEN_CREATED,
            target=token,
            detail={
                "name": name,
                "prefix": token.prefix,
                "scopes": chosen,
                "expires_at": expires_at,
            },
        )
    return token, secret


def ingest_token_revoke(*, token: IngestToken, by=None) -> bool:
    """Revoke a token for good; True if this call revoked it (False: it already was)."""
    with transaction.atomic():
        now = timezone.now()
        revoked = IngestToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if revoked:
            token.revoked_at = now
            audit_record(
                actor=by,
                action=AuditAction.TOKEN_REVOKED,
                target=token,
                detail={"name": token.name, "prefix": token.prefix},
            )
    return bool(revoked)


def ingest_token_authenticate(secret: str, *, scope: str) -> IngestToken:
    """The token with this secret if it may do ``scope`` now; marks it used.

    Raises ``TokenRefused``: 401 for an unknown, revoked or expired secret, 403 for a valid
    token without ``scope``.
    """
    token = IngestToken.objects.filter(token_hash=_hash_token(secret)).first() if secret else None
    if token is None or token.revoked_at is not None:
        raise TokenRefused(401, "invalid or revoked ingest token")
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused(401, f"ingest token expired at {token.expires_at:%Y-%m-%d %H:%M %Z}")
    if scope not in token.scopes:
        granted = ", ".join(token.scopes) or "none"
        raise TokenRefused(403, f"this token lacks the '{scope}' scope (it has: {granted})")
    # Touch at most once a minute: a busy sender should not cost a write per ping.
    if token.last_used_at is None or token.last_used_at < now - timedelta(minutes=1):
        IngestToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
