"""Single sign-on without a browser: the role mapping, matching people by e-mail (at sign-in
and in the CRM import), the refusals, the callback's pages and the password switch.

The whole flow against a real provider is tests/web/test_sso_browser.py.
"""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import Company
from accounts.roles import roles_for_groups, users_with_email
from accounts.sso import PortalOIDCBackend, Refusal, username_from_claims
from tests.conftest import PASSWORD, make_user
from tests.test_settings import printed, run_django

ROLE_GROUPS = {"Ops": ["portal-ops"], "CSM": ["portal-csm", "cs-team"], "Viewer": ["everyone"]}


# --------------------------------------------------------------------------------------------------
# The role mapping (pure)


@pytest.mark.parametrize(
    ("claimed", "roles"),
    [
        (["portal-ops"], {"Ops"}),
        (["CS-Team", "unrelated"], {"CSM"}),  # case does not matter
        (["portal-ops", "portal-csm"], {"Ops", "CSM"}),
        ("everyone", {"Viewer"}),  # one group sent as a string
        (["marketing"], set()),
        ([], set()),
        (None, set()),  # no claim at all
        ({"portal-ops": True}, set()),  # a malformed claim grants nothing
        ([" portal-ops ", 7, None], {"Ops"}),
    ],
)
def test_roles_come_from_the_groups_claim_through_the_settings(claimed, roles):
    assert roles_for_groups(claimed, ROLE_GROUPS) == roles


def test_a_role_with_no_groups_configured_is_never_granted():
    assert roles_for_groups(["", "x"], {"Ops": [], "CSM": [""], "Viewer": ["x"]}) == {"Viewer"}


def test_only_the_portals_roles_are_granted():
    assert roles_for_groups(["root"], {"Superuser": ["root"]}) == set()


def test_a_new_username_comes_from_preferred_username_else_the_email():
    free = lambda name: False  # noqa: E731
    assert username_from_claims({"preferred_username": "ann", "email": "a@x.io"}, free) == "ann"
    assert username_from_claims({"email": "ann.lee@x.io"}, free) == "ann.lee@x.io"
    assert username_from_claims({"preferred_username": "Ann Lee/x"}, free) == "Ann_Lee_x"
    taken = {"ann", "ann-2"}
    assert username_from_claims({"preferred_username": "ann"}, taken.__contains__) == "ann-3"
    with pytest.raises(ValueError):
        username_from_claims({}, free)


# --------------------------------------------------------------------------------------------------
# The backend: who signs in, with which roles, and who is refused


@pytest.fixture
def sso_settings(settings):
    settings.SSO_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = "usage-portal"
    settings.OIDC_RP_CLIENT_SECRET = "secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://idp.example.com/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://idp.example.com/token"
    settings.OIDC_OP_USER_ENDPOINT = "https://idp.example.com/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.example.com/jwks"
    settings.OIDC_ROLE_GROUPS = ROLE_GROUPS
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "accounts.sso.PortalOIDCBackend",
    ]
    return settings


def sign_in(claims: dict):
    """The backend's decision for a person the provider vouched for with ``claims``."""
    backend = PortalOIDCBackend()
    backend.request = SimpleNamespace()
    backend.get_userinfo = lambda *args: claims
    user = backend.get_or_create_user("access", "id", {})
    return user, getattr(backend.request, "sso_refusal", None)


def claims(**extra) -> dict:
    return {"email": "ann@example.com", "preferred_username": "ann", **extra}


def roles(user) -> list[str]:
    return sorted(g.name for g in user.groups.all())


def test_a_new_person_is_created_with_their_roles(db, sso_settings):
    user, refusal = sign_in(claims(groups=["portal-ops"], given_name="Ann"))
    assert refusal is None
    assert (user.username, user.email, user.first_name) == ("ann", "ann@example.com", "Ann")
    assert (roles(user), user.is_staff, user.has_usable_password()) == (["Ops"], True, False)


def test_an_existing_user_is_matched_by_email_without_regard_to_case(db, sso_settings):
    carl = get_user_model().objects.create_user("carl", email="Carl@Example.com")
    user, refusal = sign_in(claims(email="carl@example.COM", groups=["portal-csm"]))
    assert (refusal, user) == (None, carl)
    assert get_user_model().objects.count() == 1
    assert roles(user) == ["CSM"]


def test_roles_are_set_again_at_every_sign_in(db, sso_settings):
    user, _ = sign_in(claims(groups=["portal-ops", "portal-csm"]))
    other = Group.objects.create(name="newsletter")  # not a role: left alone
    user.groups.add(other)
    assert (roles(user), user.is_staff) == (["CSM", "Ops", "newsletter"], True)

    user, _ = sign_in(claims(groups=["portal-csm"]))  # taken out of the ops group at the IdP

    user.refresh_from_db()
    assert (roles(user), user.is_staff) == (["CSM", "newsletter"], False)


def test_a_person_in_no_mapped_group_is_refused_and_nothing_is_written(db, sso_settings):
    user, refusal = sign_in(claims(groups=["marketing"]))
    assert (user, refusal) == (None, Refusal.NO_ROLE)
    assert not get_user_model().objects.exists()
    # A known user keeps what they had: a refusal changes nothing.
    known = make_user("ann", "CSM")
    known.email = "ann@example.com"
    known.save()
    assert sign_in(claims(groups=[]))[1] == Refusal.NO_ROLE
    assert roles(known) == ["CSM"]


def test_a_disabled_user_is_refused_whatever_their_groups(db, sso_settings):
    dora = get_user_model().objects.create_user("dora", email="ann@example.com", is_active=False)
    user, refusal = sign_in(claims(groups=["portal-ops"]))
    assert (user, refusal) == (None, Refusal.DISABLED)
    dora.refresh_from_db()
    assert (dora.is_active, dora.is_staff, roles(dora)) == (False, False, [])


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        ({"email": ""}, Refusal.NO_EMAIL),
        ({"email": None}, Refusal.NO_EMAIL),
        ({"email_verified": False}, Refusal.UNVERIFIED),
    ],
)
def test_no_or_unverified_email_is_refused(db, sso_settings, extra, refusal):
    assert sign_in(claims(groups=["portal-ops"], **extra)) == (None, refusal)
    assert not get_user_model().objects.exists()


def test_two_users_with_the_email_are_refused_rather_than_guessed(db, sso_settings):
    get_user_model().objects.create_user("a1", email="ann@example.com")
    get_user_model().objects.create_user("a2", email="ANN@example.com")
    assert sign_in(claims(groups=["portal-ops"])) == (None, Refusal.AMBIGUOUS)


def test_a_new_user_never_takes_over_a_local_username(db, sso_settings):
    local = make_user("ann", "Ops", staff=True)  # a break-glass account, another e-mail
    user, _ = sign_in(claims(groups=["everyone"]))
    assert user != local and user.username == "ann-2"
    assert roles(local) == ["Ops"]


def test_an_id_token_for_another_client_is_refused(db, sso_settings, monkeypatch):
    backend = PortalOIDCBackend()
    monkeypatch.setattr(
        OIDCAuthenticationBackend, "verify_token", lambda self, token, **kw: {"aud": "other"}
    )
    with pytest.raises(SuspiciousOperation):
        backend.verify_token("t", nonce="n")
    monkeypatch.setattr(
        OIDCAuthenticationBackend,
        "verify_token",
        lambda self, token, **kw: {"aud": ["other", "usage-portal"]},
    )
    assert backend.verify_token("t", nonce="n")["aud"][1] == "usage-portal"


def test_a_password_sign_in_is_never_the_sso_backends(db, sso_settings):
    request = RequestFactory().post("/login/?code=c&state=s")
    assert PortalOIDCBackend().authenticate(request, username="ann", password="x") is None


# --------------------------------------------------------------------------------------------------
# The CRM import names CSMs by username or e-mail


COMPANIES = "crm_account_id,name,segment,csm,customer_since\n"


def import_companies(tmp_path, rows: str) -> str:
    path = tmp_path / "companies.csv"
    path.write_text(COMPANIES + rows)
    out = io.StringIO()
    with contextlib.suppress(CommandError):  # rows not imported: the lines say why
        call_command("import_crm", str(path), stdout=out, stderr=out)
    return out.getvalue()


def test_import_crm_matches_a_csm_by_email_without_regard_to_case(db, tmp_path):
    carl = get_user_model().objects.create_user("carl", email="carl.miller@example.com")
    import_companies(tmp_path, "0016100000000001,Acme,Strategic,Carl.Miller@EXAMPLE.com,\n")
    assert Company.objects.get(crm_account_id="0016100000000001").csm == carl
    # A re-import naming him by username is no change.
    out = import_companies(tmp_path, "0016100000000001,Acme,Strategic,carl,\n")
    assert "0 created, 0 updated, 1 unchanged, 0 with errors" in out
    assert Company.objects.get(crm_account_id="0016100000000001").csm == carl


def test_import_crm_reports_an_email_that_names_nobody_or_several(db, tmp_path):
    get_user_model().objects.create_user("a1", email="twin@example.com")
    get_user_model().objects.create_user("a2", email="Twin@example.com")
    out = import_companies(
        tmp_path,
        "0016100000000001,Acme,Strategic,nobody@example.com,\n"
        "0016100000000002,Beta,Strategic,twin@example.com,\n",
    )
    assert "line 2: csm 'nobody@example.com' is not a known username or user e-mail" in out
    assert "line 3: csm 'twin@example.com' is the e-mail of several users" in out
    assert not Company.objects.exists()


def test_a_username_is_matched_before_an_email(db, tmp_path):
    named = get_user_model().objects.create_user("x@example.com", email="")
    get_user_model().objects.create_user("other", email="x@example.com")
    import_companies(tmp_path, "0016100000000001,Acme,Strategic,x@example.com,\n")
    assert Company.objects.get().csm == named


def test_users_with_email_never_matches_a_blank_address(db):
    get_user_model().objects.create_user("noaddress", email="")
    assert list(users_with_email("  ")) == []


# --------------------------------------------------------------------------------------------------
# The pages: login, the callback's refusals, the password switch


def test_the_login_page_offers_sso_only_when_configured(db, client, sso_settings):
    assert "Sign in with single sign-on" in client.get("/login/").content.decode()
    sso_settings.SSO_ENABLED = False
    assert "Sign in with single sign-on" not in client.get("/login/").content.decode()


def test_sso_start_redirects_to_the_provider_with_state_nonce_and_pkce(db, client, sso_settings):
    response = client.get("/oidc/authenticate/?next=/burndown/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("https://idp.example.com/authorize?")
    for part in ("state=", "nonce=", "code_challenge=", "client_id=usage-portal", "groups"):
        assert part in location
    assert client.session["oidc_login_next"] == "/burndown/"


def test_a_callback_with_an_unknown_state_explains_instead_of_a_400(db, client, sso_settings):
    client.get("/oidc/authenticate/")  # a sign-in under way, with its own state
    response = client.get("/oidc/callback/?code=abc&state=forged", follow=True)
    assert response.redirect_chain[-1][0] == "/login/refused/"
    assert response.status_code == 403
    assert "The sign-in expired or was tampered with" in response.content.decode()
    # Once: the reason is gone from the session.
    assert "tampered" not in client.get("/login/refused/").content.decode()


def test_a_callback_with_no_sign_in_under_way_is_expired(db, client, sso_settings):
    response = client.get("/oidc/callback/?code=abc&state=s", follow=True)
    assert "The sign-in expired or was tampered with" in response.content.decode()


def test_the_provider_saying_no_is_explained(db, client, sso_settings):
    response = client.get("/oidc/callback/?error=access_denied&state=s", follow=True)
    assert response.status_code == 403
    assert "The identity provider did not complete the sign-in" in response.content.decode()


def test_a_provider_that_cannot_be_reached_is_explained(db, client, sso_settings):
    sso_settings.OIDC_OP_TOKEN_ENDPOINT = "http://127.0.0.1:9/token"  # nothing listens there
    sso_settings.OIDC_TIMEOUT = 2
    client.get("/oidc/authenticate/")
    state = next(iter(client.session["oidc_states"]))
    response = client.get(f"/oidc/callback/?code=abc&state={state}", follow=True)
    assert "The identity provider did not complete the sign-in" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_sso_urls_are_not_found_while_sso_is_off(db, client):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=a&state=b").status_code == 404


@pytest.fixture
def password_off(sso_settings):
    sso_settings.PASSWORD_LOGIN = False
    sso_settings.AUTHENTICATION_BACKENDS = [
        b for b in sso_settings.AUTHENTICATION_BACKENDS if not b.endswith("ModelBackend")
    ]
    return sso_settings


def test_password_login_off_shows_only_the_sso_button_and_refuses_a_password(
    db, client, ops, password_off
):
    page = client.get("/login/").content.decode()
    assert "Sign in with single sign-on" in page and 'name="password"' not in page
    response = client.post("/login/", {"username": "ops_user", "password": PASSWORD})
    assert response.status_code == 403
    assert "Signing in with a password is switched off" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_password_login_off_covers_the_admin_login_too(db, client, ops, password_off):
    response = client.post("/admin/login/", {"username": "ops_user", "password": PASSWORD})
    assert "Signing in with a password is switched off" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # And no other path takes a password: the password backend is not consulted at all.
    assert authenticate(RequestFactory().post("/"), username="ops_user", password=PASSWORD) is None


def test_password_login_on_still_signs_in_beside_sso(db, client, ops, sso_settings):
    response = client.post("/login/", {"username": "ops_user", "password": PASSWORD})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(ops.pk)


def test_an_sso_users_permissions_hold_with_password_login_off(db, password_off):
    user, _ = sign_in(claims(groups=["portal-csm"]))
    user = get_user_model().objects.get(pk=user.pk)
    assert user.has_perm("instances.label_instance")
    assert not user.has_perm("instances.map_license")


# --------------------------------------------------------------------------------------------------
# Settings: from the environment, refused at start-up when half-configured

SSO_ENV = {
    "DEBUG": "1",
    "OIDC_RP_CLIENT_ID": "usage-portal",
    "OIDC_RP_CLIENT_SECRET": "s",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.example.com/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://idp.example.com/token",
    "OIDC_OP_USER_ENDPOINT": "https://idp.example.com/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://idp.example.com/jwks",
    "OIDC_OPS_GROUPS": "portal-ops, it-admins",
}


def test_sso_settings_come_from_the_environment(tmp_path):
    result = run_django(
        "print(settings.SSO_ENABLED, settings.OIDC_ROLE_GROUPS['Ops'], "
        "settings.AUTHENTICATION_BACKENDS[1:])",
        VAR_DIR=str(tmp_path),
        **SSO_ENV,
    )
    assert printed(result) == [
        "True ['portal-ops', 'it-admins'] "
        "['django.contrib.auth.backends.ModelBackend', 'accounts.sso.PortalOIDCBackend']"
    ]
    off = run_django(
        "print(settings.AUTHENTICATION_BACKENDS[1:])",
        VAR_DIR=str(tmp_path),
        PASSWORD_LOGIN="0",
        **SSO_ENV,
    )
    assert printed(off) == ["['accounts.sso.PortalOIDCBackend']"]


def test_half_configured_sso_refuses_to_start(tmp_path):
    env = {**SSO_ENV, "OIDC_OP_JWKS_ENDPOINT": "", "VAR_DIR": str(tmp_path)}
    assert "single sign-on needs OIDC_OP_JWKS_ENDPOINT" in run_django("", **env).stderr
    env = {**SSO_ENV, "OIDC_OPS_GROUPS": "", "VAR_DIR": str(tmp_path)}
    assert "needs at least one of OIDC_OPS_GROUPS" in run_django("", **env).stderr
    nobody = run_django("", DEBUG="1", VAR_DIR=str(tmp_path), PASSWORD_LOGIN="0")
    assert "PASSWORD_LOGIN=0 needs single sign-on" in nobody.stderr
