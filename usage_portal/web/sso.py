"""Sign-in pages: the password form (break-glass, can be switched off) and single sign-on's
start, callback and refusal pages (docs/sso.md).

mozilla-django-oidc's views do the protocol; these subclasses answer 404 while SSO is not
configured, are reachable without a session (LoginRequiredMiddleware), and turn each way a
sign-in can fail into a page that says why (`REFUSALS`) instead of a bare 400 or a redirect
to "/". Who the person is and which roles they get is `accounts.sso`.
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_safe
from django.views.generic import View
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from accounts.sso import Refusal

logger = logging.getLogger(__name__)

SESSION_KEY = "sso_refusal"

PASSWORD_LOGIN_OFF = (
    "Signing in with a password is switched off for Usage Portal: use “Sign in with single "
    "sign-on”."
)


#: Each refusal in words: (heading, what to do). The contact is ``SSO_SUPPORT_CONTACT``.
REFUSALS: dict[str, tuple[str, str]] = {
    Refusal.EXPIRED: (
        "The sign-in expired or was tampered with",
        "Nothing was signed in. Start again from the sign-in page; if it keeps happening, "
        "close other Usage Portal sign-in tabs and try once more.",
    ),
    Refusal.NO_ROLE: (
        "Your account is not in a group that may use Usage Portal",
        "Your identity provider signed you in, but you are in none of the groups that give "
        "a Usage Portal role (Ops, CSM or Viewer). Ask {contact} to add you to one.",
    ),
    Refusal.DISABLED: (
        "This account is disabled",
        "Your Usage Portal account has been switched off. Ask {contact} if you need it back.",
    ),
    Refusal.NO_EMAIL: (
        "Your identity provider sent no e-mail address",
        "Usage Portal finds people by e-mail. Ask {contact} to release the e-mail claim "
        "(scope “email”) to Usage Portal.",
    ),
    Refusal.UNVERIFIED: (
        "Your e-mail address is not verified",
        "Your identity provider says your e-mail address is not verified, so it cannot be "
        "matched to a Usage Portal account. Verify it there, or ask {contact}.",
    ),
    Refusal.AMBIGUOUS: (
        "More than one Usage Portal account has your e-mail address",
        "Nothing was signed in, to be safe. Ask {contact} to keep the address on one account.",
    ),
    Refusal.PROVIDER: (
        "The identity provider did not complete the sign-in",
        "It refused the request or could not be reached. Start again; if it keeps happening, "
        "tell {contact}.",
    ),
}


def refusal_text(reason: str | None) -> tuple[str, str] | None:
    if reason not in REFUSALS:
        return None
    heading, advice = REFUSALS[reason]
    return heading, advice.format(contact=settings.SSO_SUPPORT_CONTACT)


# --------------------------------------------------------------------------------------------------
# Password sign-in: break-glass, can be switched off


def _password_login_off_check() -> None:
    if not settings.PASSWORD_LOGIN:
        raise ValidationError(PASSWORD_LOGIN_OFF, code="password_login_off")


class PortalAuthenticationForm(AuthenticationForm):
    def clean(self):
        _password_login_off_check()  # before any password is checked
        return super().clean()


class PortalAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's own sign-in form, with the same switch (``admin.site.login_form``)."""

    def clean(self):
        _password_login_off_check()
        return super().clean()


class PortalLoginView(auth_views.LoginView):
    """The sign-in page: the SSO button when it is configured, the password form unless
    ``PASSWORD_LOGIN`` is off (then a posted password is refused, 403, with the reason)."""

    authentication_form = PortalAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if not settings.PASSWORD_LOGIN:
            response.status_code = 403
        return response

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            **kwargs,
            sso_enabled=settings.SSO_ENABLED,
            password_login=settings.PASSWORD_LOGIN,
            password_login_off=PASSWORD_LOGIN_OFF,
        )


# --------------------------------------------------------------------------------------------------
# Single sign-on


def _sso_or_404() -> None:
    if not settings.SSO_ENABLED:
        raise Http404("single sign-on is not configured (OIDC_RP_CLIENT_ID)")


class SSOStartView(OIDCAuthenticationRequestView):
    """Send the browser to the provider, with state, nonce and PKCE kept in the session."""

    def __init__(self, **kwargs):
        # mozilla-django-oidc reads the provider's settings here, which fails while SSO is off:
        # read them in get, after the 404.
        View.__init__(self, **kwargs)

    def get(self, request):
        _sso_or_404()
        self.OIDC_OP_AUTH_ENDPOINT = settings.OIDC_OP_AUTHORIZATION_ENDPOINT
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class SSOCallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back: sign the person in, or say why not."""

    def get(self, request):
        _sso_or_404()
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # A state not in this session (tampered, replayed, another browser), a nonce or
            # signature that does not verify.
            logger.warning("single sign-on callback refused: %s", exc)
            request.sso_refusal = Refusal.EXPIRED
        except requests.RequestException as exc:
            # The code exchange, keys or userinfo: the provider said no (a used or forged code)
            # or did not answer in OIDC_TIMEOUT.
            logger.warning("single sign-on: the provider failed: %s", exc)
            request.sso_refusal = Refusal.PROVIDER
        return self.login_failure()

    def login_failure(self):
        request = self.request
        reason = getattr(request, "sso_refusal", None)
        if reason is None:
            # An error from the provider (e.g. access_denied), else mozilla-django-oidc's own
            # early exit: no sign-in under way in this session.
            reason = Refusal.PROVIDER if request.GET.get("error") else Refusal.EXPIRED
        request.session[SESSION_KEY] = str(reason)
        return redirect("sso_refused")


sso_start = login_not_required(SSOStartView.as_view())
sso_callback = login_not_required(SSOCallbackView.as_view())


@login_not_required
@require_safe
def sso_refused(request: HttpRequest) -> HttpResponse:
    """Why single sign-on refused, once (the reason is taken out of the session)."""
    text = refusal_text(request.session.pop(SESSION_KEY, None))
    heading, advice = text or (
        "Single sign-on did not complete",
        "Start again from the sign-in page.",
    )
    return render(
        request,
        "registration/sso_refused.html",
        {"heading": heading, "advice": advice, "sso_enabled": settings.SSO_ENABLED},
        status=403 if text else 200,
    )
