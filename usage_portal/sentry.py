"""Error reporting to Sentry: off unless ``SENTRY_DSN`` is set (settings call ``sentry_start``).

Started from the settings module, so the web processes, the worker and beat each report their
own errors (Django and Celery integrations). No personal data: ``send_default_pii`` stays off, so
no user, cookie, header or body is sent — a ping body carries customer hostnames and license
data, and the portal's users are named people. The request id of the failing request rides
along as a tag, the same one its log lines carry.
"""

from __future__ import annotations

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

from usage_portal import logs


def sentry_start(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release,
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=_tag_request_id,
    )


def _tag_request_id(event: dict, hint: dict) -> dict:
    request_id = logs.request_id.get()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return event
