"""Data can never spell the cached rows' CSRF placeholder: a hostname is shown as it is, and the
viewer's token never appears in its place."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from instances.labels import label_change_request
from instances.models import Instance
from tests.web.test_c360_views import build_account
from usage_portal.web.c360 import fragment_cache as fragments

pytestmark = pytest.mark.django_db

#: The placeholder as it was ("csrf-token-placeholder-6f1d"), and as it is now, in one hostname.
HOSTNAME = f"x-csrf-token-placeholder-6f1d-{fragments.CSRF_PLACEHOLDER}.example.com"


@pytest.fixture
def account(csm):
    company = build_account("placeholder", instances=2, pings=2, csm=csm)
    instance = Instance.objects.filter(company=company).order_by("pk").first()
    Instance.objects.filter(pk=instance.pk).update(hostname=HOSTNAME)
    # A pending change, so the cached rows also hold a form whose token is the placeholder.
    other = Instance.objects.filter(company=company).exclude(pk=instance.pk).first()
    change = label_change_request(
        instance=other, field="instance_type", value="obsolete", by=csm, schedule=False
    )
    return company, change


def _names(html: str) -> list[str]:
    return re.findall(r'<span class="instance-name">(.*?)</span>', html)


@pytest.mark.parametrize("visit", ["built", "cached"])
def test_a_hostname_holding_the_placeholder_is_shown_as_it_is(account, ops, visit):
    company, change = account
    url = reverse("account_instances", args=[company.pk])
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    if visit == "cached":
        client.get(url)
    html = client.get(url).content.decode()
    assert escape(HOSTNAME) in _names(html)
    tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html))
    tokens.add(client.cookies["csrftoken"].value)
    assert tokens
    for name in _names(html):
        assert not any(token in name for token in tokens), name
    # The placeholder still works where it belongs: the apply-now form posts with a real token.
    token = re.search(
        r'class="inline-form apply-now-form"><input type="hidden" '
        r'name="csrfmiddlewaretoken" value="([^"]+)"',
        html,
    ).group(1)
    response = client.post(
        reverse("label_apply_now", args=[change.pk]), {"csrfmiddlewaretoken": token, "next": url}
    )
    assert response.status_code == 302


def test_escaped_text_cannot_hold_the_placeholder():
    assert str(fragments.CSRF_PLACEHOLDER) not in escape(str(fragments.CSRF_PLACEHOLDER))
