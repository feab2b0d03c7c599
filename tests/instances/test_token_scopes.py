"""Ingest tokens: scopes (ingest, read), expiry, one-way revocation, no deletion, and their
audit — checked by ``ingest_token_authenticate`` for the ping endpoints and the health API."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditAction, AuditEvent, ImmutableRecord
from instances.models import IngestToken, UsagePing
from instances.services.tokens import (
    TokenRefused,
    ingest_token_authenticate,
    ingest_token_create,
    ingest_token_revoke,
)
from scoring.services import companies_refresh
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.ingest_support import payload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tokens_required(settings):
    settings.ALLOW_ANONYMOUS_PINGS = False


@pytest.fixture
def account():
    sub = SubscriptionFactory(licensed_seats=200)
    inst = InstanceFactory(subscription=sub, company=sub.company)
    store_ping(inst, days_ago=1, metrics={"billable_users": 80}, refresh=False)
    companies_refresh(company_ids=[sub.company_id])
    return sub.company


def health(client, company, secret: str):
    return client.get(
        reverse("api_health", kwargs={"crm_account_id": company.crm_account_id}),
        headers={"Authorization": f"Bearer {secret}"},
    )


def send_ping(client, secret: str):
    return client.post(
        "/usage_data",
        orjson.dumps(payload(recorded_at=timezone.now() - timedelta(days=1))),
        content_type="application/json",
        headers={"Accept": "application/json", "Authorization": f"Bearer {secret}"},
    )


# --------------------------------------------------------------------------------------------------
# Scopes


def test_a_new_token_may_ingest_only(client, account):
    token, secret = ingest_token_create(name="gitlab.acme")
    assert token.scopes == ["ingest"]

    assert send_ping(client, secret).status_code == 201
    response = health(client, account, secret)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "lacks the 'read' scope" in response.json()["error"]


def test_a_read_token_reads_health_but_sends_no_pings(client, account):
    _, secret = ingest_token_create(name="salesforce sync", scopes=["read"])

    response = health(client, account, secret)
    assert response.status_code == 200 and response.json()["crm_account_id"]
    refused = send_ping(client, secret)
    assert refused.status_code == 403
    assert "lacks the 'ingest' scope" in refused.json()["error"]
    assert not UsagePing.objects.filter(instance__uuid=payload()["uuid"]).exists()


def test_a_token_may_hold_both_scopes(client, account):
    _, secret = ingest_token_create(name="both", scopes=["ingest", "read"])
    assert health(client, account, secret).status_code == 200
    assert send_ping(client, secret).status_code == 201


@pytest.mark.parametrize("scopes", [[], ["write"], ["ingest", "admin"]])
def test_unknown_or_no_scopes_are_refused_at_creation(scopes):
    with pytest.raises(ValueError):
        ingest_token_create(name="x", scopes=scopes)
    assert not IngestToken.objects.exists() and not AuditEvent.objects.exists()


# --------------------------------------------------------------------------------------------------
# Unknown, revoked, expired: 401 with a Bearer challenge


def _expired():
    token, secret = ingest_token_create(
        name="old", scopes=["ingest", "read"], expires_at=timezone.now() - timedelta(minutes=1)
    )
    return secret


def _revoked():
    token, secret = ingest_token_create(name="leaked", scopes=["ingest", "read"])
    ingest_token_revoke(token=token)
    return secret


@pytest.mark.parametrize(
    ("secret_of", "message"),
    [
        (lambda: "upt_not-a-real-token", "invalid or revoked"),
        (_revoked, "invalid or revoked"),
        (_expired, "expired"),
    ],
    ids=["unknown", "revoked", "expired"],
)
def test_unknown_revoked_or_expired_tokens_are_401_everywhere(client, account, secret_of, message):
    secret = secret_of()
    for response in (health(client, account, secret), send_ping(client, secret)):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert message in response.json()["error"]
    assert not UsagePing.objects.filter(instance__uuid=payload()["uuid"]).exists()


def test_the_health_api_without_any_credentials_is_a_401_challenge(client, account):
    response = client.get(reverse("api_health", kwargs={"crm_account_id": account.crm_account_id}))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "authentication required" in response.json()["error"]


def test_a_token_not_yet_expired_is_accepted_and_marked_used(db):
    token, secret = ingest_token_create(name="t", expires_at=timezone.now() + timedelta(days=1))
    assert ingest_token_authenticate(secret, scope="ingest") == token
    assert IngestToken.objects.get().last_used_at is not None


def test_a_refused_scope_does_not_mark_the_token_used(db):
    _, secret = ingest_token_create(name="t")
    with pytest.raises(TokenRefused) as refusal:
        ingest_token_authenticate(secret, scope="read")
    assert refusal.value.status == 403
    assert IngestToken.objects.get().last_used_at is None


# --------------------------------------------------------------------------------------------------
# Revocation is one-way; tokens are never deleted


def test_a_revoked_token_cannot_be_unrevoked(db):
    token, secret = ingest_token_create(name="leaked")
    assert ingest_token_revoke(token=token) is True
    token = IngestToken.objects.get()
    revoked_at = token.revoked_at

    token.revoked_at = None
    with pytest.raises(ImmutableRecord), transaction.atomic():
        token.save()
    with pytest.raises(ImmutableRecord), transaction.atomic():
        IngestToken.objects.filter(pk=token.pk).update(revoked_at=None)
    assert IngestToken.objects.get().revoked_at == revoked_at
    with pytest.raises(TokenRefused):
        ingest_token_authenticate(secret, scope="ingest")


def test_revoking_twice_revokes_once(db):
    token, _ = ingest_token_create(name="t")
    assert ingest_token_revoke(token=token) is True
    first = IngestToken.objects.get().revoked_at
    assert ingest_token_revoke(token=token) is False
    assert IngestToken.objects.get().revoked_at == first
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).count() == 1


def test_a_token_is_never_deleted(db):
    token, _ = ingest_token_create(name="t")
    for attempt in (token.delete, IngestToken.objects.all().delete):
        with pytest.raises(ImmutableRecord), transaction.atomic():
            attempt()
    assert IngestToken.objects.filter(pk=token.pk).exists()


# --------------------------------------------------------------------------------------------------
# Audit


def test_creating_and_revoking_are_audited(ops):
    expires = timezone.now() + timedelta(days=30)
    token, secret = ingest_token_create(name="sync", by=ops, scopes=["read"], expires_at=expires)
    ingest_token_revoke(token=token, by=ops)

    created, revoked = AuditEvent.objects.order_by("pk")
    assert (created.action, created.actor, created.target_id) == (
        AuditAction.TOKEN_CREATED,
        ops,
        str(token.pk),
    )
    assert created.detail == {
        "name": "sync",
        "prefix": token.prefix,
        "scopes": ["read"],
        "expires_at": expires.isoformat(),
    }
    assert secret not in repr(created.detail) and secret not in created.target_repr
    assert (revoked.action, revoked.actor) == (AuditAction.TOKEN_REVOKED, ops)


# --------------------------------------------------------------------------------------------------
# The admin


def test_ops_creates_a_read_token_in_the_admin_and_sees_the_secret_once(client, ops, account):
    client.force_login(ops)
    response = client.post(
        "/admin/instances/ingesttoken/add/",
        {"name": "salesforce sync", "scopes": ["read"]},
        follow=True,
    )
    (message,) = [str(m) for m in response.context["messages"] if "Copy this token" in str(m)]
    secret = message.split("<code>")[1].split("</code>")[0]
    token = IngestToken.objects.get()
    assert token.scopes == ["read"] and token.created_by == ops
    assert health(Client(), account, secret).status_code == 200
    (event,) = AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED)
    assert event.actor == ops and event.detail["scopes"] == ["read"]
    # Shown once: the token's own page never shows it again.
    page = client.get(f"/admin/instances/ingesttoken/{token.pk}/change/").content.decode()
    assert secret not in page


def test_the_admin_add_form_offers_ingest_by_default(client, ops):
    client.force_login(ops)
    page = client.get("/admin/instances/ingesttoken/add/").content.decode()
    assert 'name="scopes" value="ingest" id="id_scopes_0" checked>' in page
    assert 'name="scopes" value="read" id="id_scopes_1">' in page


def test_the_admin_cannot_unrevoke_or_widen_a_token(client, ops):
    token, _ = ingest_token_create(name="leaked")
    ingest_token_revoke(token=token, by=ops)
    revoked_at = IngestToken.objects.get().revoked_at
    client.force_login(ops)
    page = client.get(f"/admin/instances/ingesttoken/{token.pk}/change/").content.decode()
    assert 'name="revoked_at' not in page and 'name="scopes"' not in page

    response = client.post(
        f"/admin/instances/ingesttoken/{token.pk}/change/",
        {"name": "renamed", "revoked_at_0": "", "revoked_at_1": "", "scopes": ["ingest", "read"]},
    )
    assert response.status_code == 302
    token = IngestToken.objects.get()
    assert token.name == "renamed"  # the name is all that changes
    assert token.revoked_at == revoked_at and token.scopes == ["ingest"]


def test_the_admin_revokes_and_never_deletes(client, ops):
    token, secret = ingest_token_create(name="pipeline")
    client.force_login(ops)
    listing = client.get("/admin/instances/ingesttoken/").content.decode()
    assert 'value="revoke"' in listing and 'value="delete_selected"' not in listing
    assert client.get(f"/admin/instances/ingesttoken/{token.pk}/delete/").status_code == 403
    assert (
        client.post(f"/admin/instances/ingesttoken/{token.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    client.post(
        "/admin/instances/ingesttoken/",
        {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"},
    )
    assert IngestToken.objects.filter(pk=token.pk, revoked_at__isnull=True).exists()

    response = client.post(
        "/admin/instances/ingesttoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    assert IngestToken.objects.get().revoked_at is not None
    (event,) = AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED)
    assert event.actor == ops and event.target_id == str(token.pk)
    with pytest.raises(TokenRefused):
        ingest_token_authenticate(secret, scope="ingest")


# --------------------------------------------------------------------------------------------------
# A web process remembers the tokens it verified, briefly (INGEST_TOKEN_CACHE_SECONDS)


def test_a_verified_token_is_not_looked_up_again_while_remembered(
    django_assert_num_queries, settings
):
    settings.INGEST_TOKEN_CACHE_SECONDS = 10
    token, secret = ingest_token_create(name="busy sender")
    assert ingest_token_authenticate(secret, scope="ingest") == token
    with django_assert_num_queries(0):
        assert ingest_token_authenticate(secret, scope="ingest") == token


def test_with_no_memory_every_request_looks_the_token_up(django_assert_num_queries, settings):
    settings.INGEST_TOKEN_CACHE_SECONDS = 0
    _, secret = ingest_token_create(name="t")
    ingest_token_authenticate(secret, scope="ingest")
    with django_assert_num_queries(1):
        ingest_token_authenticate(secret, scope="ingest")


def test_a_revocation_in_this_process_applies_at_once(settings):
    settings.INGEST_TOKEN_CACHE_SECONDS = 3600
    token, secret = ingest_token_create(name="leaked")
    ingest_token_authenticate(secret, scope="ingest")
    assert ingest_token_revoke(token=token) is True
    with pytest.raises(TokenRefused) as refusal:
        ingest_token_authenticate(secret, scope="ingest")
    assert refusal.value.status == 401


def test_a_revocation_made_elsewhere_applies_once_the_memory_lapses(monkeypatch, settings):
    from instances.services import tokens

    settings.INGEST_TOKEN_CACHE_SECONDS = 10
    clock = [1000.0]
    monkeypatch.setattr(tokens.time, "monotonic", lambda: clock[0])
    _, secret = ingest_token_create(name="leaked")
    ingest_token_authenticate(secret, scope="ingest")
    # Another process (the admin's) revokes it: this one's memory does not know yet.
    IngestToken.objects.update(revoked_at=timezone.now())
    clock[0] += 9
    ingest_token_authenticate(secret, scope="ingest")
    clock[0] += 2
    with pytest.raises(TokenRefused) as refusal:
        ingest_token_authenticate(secret, scope="ingest")
    assert refusal.value.status == 401


def test_a_remembered_token_still_expires_on_time(monkeypatch, settings):
    from instances.services import tokens

    settings.INGEST_TOKEN_CACHE_SECONDS = 3600
    expires = timezone.now() + timedelta(minutes=5)
    _, secret = ingest_token_create(name="t", expires_at=expires)
    ingest_token_authenticate(secret, scope="ingest")
    monkeypatch.setattr(tokens.timezone, "now", lambda: expires + timedelta(seconds=1))
    with pytest.raises(TokenRefused) as refusal:
        ingest_token_authenticate(secret, scope="ingest")
    assert "expired" in refusal.value.message


def test_an_unknown_secret_is_looked_up_every_time(django_assert_num_queries, settings):
    settings.INGEST_TOKEN_CACHE_SECONDS = 3600
    for _ in range(2):
        with django_assert_num_queries(1), pytest.raises(TokenRefused):
            ingest_token_authenticate("upt_not-a-token", scope="ingest")
