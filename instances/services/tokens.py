"""Ingest tokens: the bearer secrets GitLab instances (``ingest``) and readers of the health API
(``read``) send.

Only a secret's SHA-256 is stored; the secret itself is shown once, when the token is created.
``ingest_token_authenticate`` is the one check of a presented secret: known, not revoked, not
expired, and holding the scope the endpoint needs. Creating and revoking are audited;
revoking is one-way and a token is never deleted (``IngestToken`` refuses both).

A web process remembers the tokens it verified for ``INGEST_TOKEN_CACHE_SECONDS`` (10 s): a busy
sender's every ping would otherwise pay a query for the same answer, a tenth of what storing
the ping costs the web process. Scopes and expiry never change after creation (expiry is
still checked on every call); a revocation applies at once in the process that made it and
within that many seconds in the others. Only verified secrets are remembered: an unknown or
revoked one is looked up every time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
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


class _VerifiedTokens:
    """This process's verified tokens by hash, each for ``INGEST_TOKEN_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, IngestToken]] = {}

    def get(self, token_hash: str) -> IngestToken | None:
        entry = self._tokens.get(token_hash)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, token: IngestToken) -> None:
        seconds = settings.INGEST_TOKEN_CACHE_SECONDS
        if seconds <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._tokens) >= 1000:  # bounded: drop what has lapsed, else start afresh
                self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
                if len(self._tokens) >= 1000:
                    self._tokens = {}
            self._tokens[token.token_hash] = (now + seconds, token)

    def forget(self, token_id: int) -> None:
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1].pk != token_id}


_verified = _VerifiedTokens()


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
            # Now, and again once committed: meanwhile another thread may read it unrevoked.
            _verified.forget(token.pk)
            transaction.on_commit(lambda: _verified.forget(token.pk))
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
    token_hash = _hash_token(secret) if secret else ""
    token = _verified.get(token_hash) if token_hash else None
    if token is None and token_hash:
        token = IngestToken.objects.filter(token_hash=token_hash).first()
        if token is not None and token.revoked_at is None:
            _verified.put(token)
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
        token.last_used_at = now
    return token
