"""Single sign-on: the OpenID Connect backend that turns a provider's claims into a portal user.

mozilla-django-oidc does the protocol (state, nonce, PKCE, the code exchange, the ID token's
signature); this backend decides who the person is and what they may do:

- the roles come from the groups claim (``OIDC_GROUPS_CLAIM``) through ``OIDC_ROLE_GROUPS``
  (`accounts.roles.roles_for_groups`), and are set again at every sign-in: a person taken out
  of a group at the provider loses the role at their next sign-in;
- a person in none of those groups is refused, and nothing is created or changed;
- an existing user is found by e-mail (`accounts.roles.users_with_email`), which is how a CSM
  imported from the CRM (by username or e-mail) becomes the person signing in; otherwise a user
  is created, named from ``preferred_username`` (or the e-mail);
- a disabled (inactive) user is refused and left as they are, whatever the provider says.

A refusal returns no user and leaves its reason on the request (``request.sso_refusal``, one of
`Refusal`), for the callback page to explain.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.roles import ROLE_PERMISSIONS, roles_for_groups, users_with_email

logger = logging.getLogger(__name__)

#: What a Django username may hold (``UnicodeUsernameValidator``), and its length.
_NOT_USERNAME = re.compile(r"[^\w.@+-]")
USERNAME_MAX = 150


class Refusal(StrEnum):
    """Why a sign-in through the provider was refused; the page says each in words."""

    EXPIRED = "expired"  # state or nonce wrong or gone: an old tab, a replay, tampering
    NO_ROLE = "no_role"  # in no group that maps to a role
    DISABLED = "disabled"  # the portal user is inactive
    NO_EMAIL = "no_email"  # the provider sent no e-mail address
    UNVERIFIED = "unverified"  # the provider says the address is not verified
    AMBIGUOUS = "ambiguous"  # several portal users have the address
    PROVIDER = "provider"  # the provider refused, or could not be reached


def refuse(request, reason: Refusal) -> None:
    request.sso_refusal = reason
    logger.warning("single sign-on refused: %s", reason.value)


def username_from_claims(claims: dict, taken) -> str:
    """A free username for a new user: ``preferred_username``, else the e-mail, made to fit
    Django's username rules; ``taken(name)`` says whether one is in use (then ``name-2``...)."""
    for candidate in (claims.get("preferred_username"), claims.get("email")):
        if not isinstance(candidate, str):
            continue
        base = _NOT_USERNAME.sub("_", candidate.strip())[:USERNAME_MAX]
        if not base.strip("_"):
            continue
        name, n = base, 1
        while taken(name):
            n += 1
            suffix = f"-{n}"
            name = base[: USERNAME_MAX - len(suffix)] + suffix
        return name
    raise ValueError("no preferred_username or e-mail to name the user by")


class PortalOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend with the portal's matching, roles and refusals."""

    def authenticate(self, request, **kwargs):
        # Django asks every backend about every sign-in: a password sign-in is not ours, even on
        # a URL that happens to carry ?code=&state=.
        if request is None or "password" in kwargs or "username" in kwargs:
            return None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        # mozilla-django-oidc checks the signature, expiry and nonce but not the audience: an
        # ID token the provider issued to another of its clients must not sign anyone in here.
        # (Only ID tokens come with a nonce argument; a signed userinfo answer has no aud.)
        if "nonce" in kwargs:
            audience = payload.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if self.OIDC_RP_CLIENT_ID not in audiences:
                raise SuspiciousOperation("the ID token was issued to another client")
        return payload

    def verify_claims(self, claims) -> bool:
        # The reasons are decided in get_or_create_user, where they can be told apart.
        return True

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        email = claims.get("email")
        if not isinstance(email, str) or not email.strip():
            return refuse(self.request, Refusal.NO_EMAIL)
        # Matching by e-mail hands the provider's person an existing account: only if the
        # provider vouches for the address (a claim of False; a provider that sends no
        # email_verified at all is trusted, as most corporate IdPs only list verified ones).
        if claims.get("email_verified") is False:
            return refuse(self.request, Refusal.UNVERIFIED)
        roles = roles_for_groups(claims.get(settings.OIDC_GROUPS_CLAIM), settings.OIDC_ROLE_GROUPS)
        matches = list(users_with_email(email)[:2])
        if len(matches) > 1:
            return refuse(self.request, Refusal.AMBIGUOUS)
        user = matches[0] if matches else None
        if user is not None and not user.is_active:
            return refuse(self.request, Refusal.DISABLED)
        if not roles:
            # Nothing created, nothing changed: a refusal writes nothing. A matched user keeps
            # their roles until a sign-in that succeeds (or ops) changes them.
            return refuse(self.request, Refusal.NO_ROLE)
        with transaction.atomic():
            if user is None:
                user = self.create_user(claims)
            self.update_user(user, claims, roles=roles)
        return user

    def create_user(self, claims):
        users = self.UserModel.objects
        username = username_from_claims(
            claims, taken=lambda name: users.filter(username__iexact=name).exists()
        )
        # No usable password: this person signs in through the provider only.
        return users.create_user(username, email=claims["email"].strip())

    def update_user(self, user, claims, roles: set[str] | None = None):
        """Bring the user in line with the provider: names, and exactly the mapped roles."""
        if roles is None:  # mozilla-django-oidc's own call path; ours always passes them
            roles = roles_for_groups(
                claims.get(settings.OIDC_GROUPS_CLAIM), settings.OIDC_ROLE_GROUPS
            )
        for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            value = claims.get(claim)
            if isinstance(value, str) and value.strip():
                setattr(user, field, value.strip()[:150])
        # The admin is ops' (as for the demo's ops login); other groups a user is in are not
        # roles and are left alone, as is a superuser's flag.
        user.is_staff = "Ops" in roles or user.is_superuser
        user.save()
        role_groups = Group.objects.filter(name__in=ROLE_PERMISSIONS)
        user.groups.remove(*[g for g in role_groups if g.name not in roles])
        user.groups.add(*[g for g in role_groups if g.name in roles])
        return user
