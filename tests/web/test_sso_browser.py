"""Single sign-on end to end: Chromium signs in through a real OpenID Connect provider.

The provider (tests/oidc_provider: django-oauth-toolkit, RS256, PKCE) runs in its own process on
127.0.0.1; the portal is pytest-django's live server with its OIDC settings pointing there.
Every step is the real one: the portal's redirect with state, nonce and PKCE, the provider's
login page, the code exchange, the ID token's signature against the provider's JWKS, userinfo.
"""

from __future__ import annotations

import io
import os
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import Company
from tests.oidc_provider.server import start_provider

pytestmark = pytest.mark.browser

SHOTS = os.environ.get("SHOTS_DIR", "/tmp/shots/sso")

#: The provider's people: (username, password, e-mail, groups).
PEOPLE = [
    {
        "username": "olivia",
        "password": "op-olivia-pw",
        "email": "olivia@example.com",
        "first_name": "Olivia",
        "groups": ["portal-ops"],
    },
    {
        # Known to the portal already, by e-mail (in another case): the CRM owner.
        "username": "cmiller",
        "password": "op-carl-pw",
        "email": "Carl.Miller@Example.com",
        "first_name": "Carl",
        "groups": ["portal-csm", "everyone"],
    },
    {
        "username": "nina",
        "password": "op-nina-pw",
        "email": "nina@example.com",
        "groups": ["marketing"],
    },
    {
        "username": "dora",
        "password": "op-dora-pw",
        "email": "dora@example.com",
        "groups": ["portal-viewer"],
    },
]


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory):
    op = start_provider(
        tmp_path_factory.mktemp("oidc-provider"),
        redirect_uri=f"{live_server.url}/oidc/callback/",
        people=PEOPLE,
    )
    yield op
    op.stop()


@pytest.fixture
def sso(settings, provider):
    """The portal configured for the provider, as the environment would configure it."""
    settings.SSO_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
    for name, url in provider.endpoints.items():
        setattr(settings, name, url)
    settings.OIDC_ROLE_GROUPS = {
        "Ops": ["portal-ops"],
        "CSM": ["portal-csm"],
        "Viewer": ["portal-viewer"],
    }
    settings.SSO_SUPPORT_CONTACT = "the CS Ops team"
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "accounts.sso.PortalOIDCBackend",
    ]
    return provider


def sign_in_through_provider(page, username: str, password: str) -> None:
    page.goto(f"{page.base_url}/login/")
    shot(page, "login")
    page.click("text=Sign in with single sign-on")
    page.wait_for_selector("#op-username")  # the provider's own page, on its own port
    assert page.url.startswith(page.provider_url), page.url
    page.fill("#op-username", username)
    page.fill("#op-password", password)
    page.click("#op-sign-in")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def sso_page(page, sso):
    page.provider_url = sso.url
    return page


def shot(page, name: str) -> None:
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def test_an_ops_person_is_created_on_first_sign_in_and_lands_on_the_dashboard_as_ops(
    sso_page, transactional_db
):
    page = sso_page
    assert not get_user_model().objects.filter(email__iexact="olivia@example.com").exists()

    sign_in_through_provider(page, "olivia", "op-olivia-pw")

    assert urlsplit(page.url).path == "/", page.url
    shot(page, "ops_dashboard")
    assert page.locator(".role-badge").all_inner_texts() == ["Ops"]
    assert page.locator("a", has_text="Admin site").count() == 1
    user = get_user_model().objects.get(email="olivia@example.com")
    assert (user.username, user.is_staff, user.has_usable_password()) == ("olivia", True, False)
    assert [g.name for g in user.groups.all()] == ["Ops"]
    # And the admin is open to them, as to any ops.
    page.goto(f"{page.base_url}/admin/")
    assert page.locator("#site-name").count() == 1


def test_a_csm_imported_from_the_crm_by_email_signs_in_as_that_user_and_sees_my_accounts(
    sso_page, transactional_db, tmp_path
):
    page = sso_page
    carl = get_user_model().objects.create_user("carl", email="carl.miller@example.com")
    crm = tmp_path / "companies.csv"
    crm.write_text(
        "crm_account_id,name,segment,csm,customer_since\n"
        "0016100000000777,Miller Robotics,Strategic,CARL.MILLER@example.com,2021-04-01\n"
    )
    call_command("import_crm", str(crm), stdout=io.StringIO())
    assert Company.objects.get(crm_account_id="0016100000000777").csm == carl

    sign_in_through_provider(page, "cmiller", "op-carl-pw")

    assert urlsplit(page.url).path == "/", page.url
    shot(page, "csm_dashboard")
    assert page.locator(".role-badge").all_inner_texts() == ["CSM"]
    assert page.locator("a", has_text="My accounts").count() == 1
    assert page.locator("a", has_text="Admin site").count() == 0
    # The same user, not a second one: the CRM's owner is the person who signed in.
    assert get_user_model().objects.filter(email__iexact="carl.miller@example.com").count() == 1
    carl.refresh_from_db()
    assert [g.name for g in carl.groups.all()] == ["CSM"]
    assert carl.first_name == "Carl"


def test_a_person_in_no_mapped_group_is_refused_and_nothing_is_created(sso_page, transactional_db):
    page = sso_page
    before = get_user_model().objects.count()

    sign_in_through_provider(page, "nina", "op-nina-pw")

    shot(page, "refused_no_group")
    assert urlsplit(page.url).path == "/login/refused/"
    assert page.locator("h1").inner_text() == (
        "Your account is not in a group that may use Usage Portal"
    )
    assert "Ask the CS Ops team" in page.locator("[role=alert]").inner_text()
    assert get_user_model().objects.count() == before
    # Not signed in: the dashboard still sends to the sign-in page.
    page.goto(f"{page.base_url}/")
    assert urlsplit(page.url).path == "/login/"


def test_a_disabled_portal_user_is_refused_whatever_the_provider_says(sso_page, transactional_db):
    page = sso_page
    get_user_model().objects.create_user("dora", email="dora@example.com", is_active=False)

    sign_in_through_provider(page, "dora", "op-dora-pw")

    shot(page, "refused_disabled")
    assert page.locator("h1").inner_text() == "This account is disabled"
    dora = get_user_model().objects.get(username="dora")
    assert (dora.is_active, dora.groups.count()) == (False, 0)
    page.goto(f"{page.base_url}/")
    assert urlsplit(page.url).path == "/login/"


@pytest.mark.parametrize("field", ["state", "nonce"])
def test_a_tampered_state_or_nonce_is_refused_clearly(sso_page, transactional_db, field):
    """The authorization request is changed on its way to the provider, as an attacker between
    the two would: the provider signs the person in and echoes the changed value back (the state
    in the redirect, the nonce inside the signed ID token), and the portal must refuse it."""
    page = sso_page
    page.goto(f"{page.base_url}/login/")
    page.click("text=Sign in with single sign-on")
    page.wait_for_selector("#op-username")
    login_url = urlsplit(page.url)
    authorize = urlsplit(parse_qs(login_url.query)["next"][0])
    request = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert request[field] and request["code_challenge"]
    request[field] = request[field][::-1] + "x"
    tampered = urlunsplit(authorize._replace(query=urlencode(request)))
    page.goto(urlunsplit(login_url._replace(query=urlencode({"next": tampered}))))
    page.fill("#op-username", "olivia")
    page.fill("#op-password", "op-olivia-pw")
    page.click("#op-sign-in")
    page.wait_for_load_state("networkidle")

    shot(page, f"refused_{field}")
    assert urlsplit(page.url).path == "/login/refused/", page.url
    assert page.locator("h1").inner_text() == "The sign-in expired or was tampered with"
    assert not get_user_model().objects.filter(email="olivia@example.com").exists()
    page.goto(f"{page.base_url}/")
    assert urlsplit(page.url).path == "/login/"
