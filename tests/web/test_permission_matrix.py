"""Who may reach what: every URL of the portal × method × role, declared in one table.

Roles are the five people of the portal: nobody signed in, a viewer, the CSM who owns the
account under test, another CSM, and ops. ``MATRIX`` says, per URL name and method, what each
of them gets; a case is one request in a small world (an account the owning CSM holds, with an
instance, a ping, a pending label change, an open health drop and an unmapped license), with
valid form data, so a refusal is the permission check and not the form's validation.

After every request that is not a declared write the database must be exactly as before: every
row of every model (sessions aside) is compared, so a refusal that writes half-way, or a GET
that writes, fails. A declared write is checked for its effect (``WRITES``).

The admin site is one entry, tested apart (``test_admin_site_*``). The ping endpoints are
declared with the test settings' default ``ALLOW_ANONYMOUS_PINGS=False``: without an ingest
token every sender gets 401, whatever session it carries (``test_ping_endpoints_accept_*``
proves the same bodies are accepted with a token).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver, path, reverse
from django.utils import timezone

from accounts.models import Company, TableColumns, UserPreferences
from instances.labels import label_change_request
from instances.models import Instance, LabelChange, License, UsagePing
from instances.services.tokens import ingest_token_create
from scoring.models import (
    AdminJob,
    AdminJobKind,
    AdminJobState,
    AlertStatus,
    HealthAlert,
    ScoreSnapshot,
)
from scoring.services import companies_refresh
from tests.conftest import PASSWORD, make_user
from tests.factories import InstanceFactory, SubscriptionFactory, store_ping
from tests.ingest_support import payload
from usage_portal.web.dashboard.tables import CHOOSABLE_COLUMNS

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "viewer", "csm", "other_csm", "ops")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
#: The admin site is one entry of the matrix, tested on its own.
ADMIN = "admin"


# --------------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True)
class Outcome:
    """What one request must answer, and what it may change."""

    status: int
    to: str | None = None  # a 302's exact Location
    sign_in: bool = False  # a 302 to the sign-in page carrying ?next=
    #: False: the database must be unchanged. True: the URL's WRITES check must hold. A set of
    #: model labels: only those tables may change, and they must.
    writes: bool | frozenset[str] = False

    @property
    def refusal(self) -> bool:
        return self.sign_in or 400 <= self.status < 500

    def __str__(self) -> str:
        return "sign-in" if self.sign_in else f"{self.status}{'+write' if self.writes else ''}"


OK = Outcome(200)
SIGN_IN = Outcome(302, sign_in=True)
FORBIDDEN = Outcome(403)
NOT_ALLOWED = Outcome(405)
NO_TOKEN = Outcome(401)
NOT_FOUND = Outcome(404)
#: A redirect after an allowed write.
DONE = Outcome(302, writes=True)
#: 200 with something stored: the uploaded ping, the instance-type export file.
STORED = Outcome(200, writes=True)
#: The upload page answers 200 but keeps another CSM's ping for their account as a rejected
#: payload (Data quality lists it); nothing else may change.
KEPT_AS_REJECTED = Outcome(200, writes=frozenset({"instances.rejectedpayload"}))
#: Signed in already: the sign-in page sends people to the dashboard.
TO_DASHBOARD = Outcome(302, to="/")
SIGNED_IN = Outcome(302, to="/", writes=True)  # last_login
SIGNED_OUT = Outcome(302, to="/login/")


def row(anonymous: Outcome, viewer: Outcome, csm: Outcome, other_csm: Outcome, ops: Outcome):
    return dict(zip(ROLES, (anonymous, viewer, csm, other_csm, ops), strict=True))


def signed_in(outcome: Outcome) -> dict[str, Outcome]:
    """Everyone signed in gets ``outcome``; nobody signed in is sent to the sign-in page."""
    return row(SIGN_IN, outcome, outcome, outcome, outcome)


def everyone(outcome: Outcome) -> dict[str, Outcome]:
    return row(outcome, outcome, outcome, outcome, outcome)


#: A page that only reads, whatever the method: function views that treat every method but
#: POST as GET, and answer a POST the same way because they have no form.
READ_ANY_METHOD = {method: signed_in(OK) for method in METHODS}
#: A list page (django-filter's FilterView): GET and HEAD only.
READ_LIST = {
    "GET": signed_in(OK),
    "HEAD": signed_in(OK),
    "POST": signed_in(NOT_ALLOWED),
    "PUT": signed_in(NOT_ALLOWED),
    "DELETE": signed_in(NOT_ALLOWED),
}
#: A ``require_POST`` view: every other method is 405 for the signed-in.
NOT_POST = {method: signed_in(NOT_ALLOWED) for method in ("GET", "HEAD", "PUT", "DELETE")}
#: An operations probe (/healthz, /readyz): open to everyone, GET and HEAD only.
PROBE = {
    **{method: everyone(OK) for method in ("GET", "HEAD")},
    **{method: everyone(NOT_ALLOWED) for method in ("POST", "PUT", "DELETE")},
}
#: A ping sender endpoint: POST only, no session, no CSRF, an ingest token required.
SENDER = {
    **{method: everyone(NOT_ALLOWED) for method in ("GET", "HEAD", "PUT", "DELETE")},
    "POST": everyone(NO_TOKEN),
}

# fmt: off
#: Per URL name, per method: (anonymous, viewer, owning CSM, other CSM, ops).
MATRIX: dict[str, dict[str, dict[str, Outcome]]] = {
    "login": {
        "GET": row(OK, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
        "HEAD": row(OK, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
        "POST": row(SIGNED_IN, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
        # FormView's put is its post, but Django parses no form out of a PUT: the form is
        # re-shown, nobody is signed in.
        "PUT": row(OK, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
        "DELETE": row(NOT_ALLOWED, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD, TO_DASHBOARD),
    },
    "logout": {
        # LogoutView is not login_not_required: nobody signed in is sent to sign in first.
        **{method: signed_in(NOT_ALLOWED) for method in ("GET", "HEAD", "PUT", "DELETE")},
        "POST": signed_in(SIGNED_OUT),
    },
    ADMIN: {},  # tested apart: test_admin_site_*
    # Single sign-on: not configured in the test settings, so GET is 404 (mozilla-django-oidc's
    # views allow GET alone: the rest is 405); tests/accounts/test_sso.py and
    # tests/web/test_sso_browser.py cover it switched on.
    "oidc_authentication_init": {
        "GET": everyone(NOT_FOUND),
        **{method: everyone(NOT_ALLOWED) for method in ("HEAD", "POST", "PUT", "DELETE")},
    },
    "oidc_authentication_callback": {
        "GET": everyone(NOT_FOUND),
        **{method: everyone(NOT_ALLOWED) for method in ("HEAD", "POST", "PUT", "DELETE")},
    },
    # Why SSO refused: open to everyone (nobody is signed in yet), GET and HEAD only.
    "sso_refused": {
        **{method: everyone(OK) for method in ("GET", "HEAD")},
        **{method: everyone(NOT_ALLOWED) for method in ("POST", "PUT", "DELETE")},
    },
    "dashboard": READ_LIST,
    "dashboard_columns": {**NOT_POST, "POST": signed_in(DONE)},  # one's own columns
    "account_summary": READ_ANY_METHOD,
    "account_adoption": READ_ANY_METHOD,
    "account_trends": READ_ANY_METHOD,
    "account_instances": READ_ANY_METHOD,
    "account_scorecard": READ_ANY_METHOD,
    "instance_edit": {
        "GET": row(SIGN_IN, FORBIDDEN, OK, FORBIDDEN, OK),
        # require_http_methods(["GET", "POST"]) is checked before the account: HEAD is 405.
        "HEAD": signed_in(NOT_ALLOWED),
        "POST": row(SIGN_IN, FORBIDDEN, DONE, FORBIDDEN, DONE),
        "PUT": signed_in(NOT_ALLOWED),
        "DELETE": signed_in(NOT_ALLOWED),
    },
    "account_sentiment": {**NOT_POST, "POST": row(SIGN_IN, FORBIDDEN, DONE, FORBIDDEN, DONE)},
    "account_roi": {**NOT_POST, "POST": row(SIGN_IN, FORBIDDEN, DONE, FORBIDDEN, DONE)},
    "label_apply_now": {
        **NOT_POST,
        "POST": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, DONE),
    },
    "alerts": READ_ANY_METHOD,
    "alert_close": {**NOT_POST, "POST": row(SIGN_IN, FORBIDDEN, DONE, FORBIDDEN, DONE)},
    "burndown": READ_LIST,
    "versions_report": READ_LIST,
    "data_quality": READ_ANY_METHOD,
    "license_map": {
        "GET": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
        "HEAD": signed_in(NOT_ALLOWED),
        "POST": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, DONE),
        "PUT": signed_in(NOT_ALLOWED),
        "DELETE": signed_in(NOT_ALLOWED),
    },
    "metrics_dictionary": READ_ANY_METHOD,
    # One's own profile (the time zone): there is no one else's to reach.
    "profile": {
        "GET": signed_in(OK),
        "HEAD": signed_in(NOT_ALLOWED),
        "POST": signed_in(DONE),
        "PUT": signed_in(NOT_ALLOWED),
        "DELETE": signed_in(NOT_ALLOWED),
    },
    "usage_data": SENDER,
    "usage_ping_errors": SENDER,
    "usage_ping_metadata": SENDER,
    "ping_upload": {
        # The page is open to every CSM; each file's account decides whether it is stored.
        "GET": row(SIGN_IN, FORBIDDEN, OK, OK, OK),
        "HEAD": row(SIGN_IN, FORBIDDEN, OK, OK, OK),
        "POST": row(SIGN_IN, FORBIDDEN, STORED, KEPT_AS_REJECTED, STORED),
        "PUT": row(SIGN_IN, FORBIDDEN, OK, OK, OK),
        "DELETE": row(SIGN_IN, FORBIDDEN, OK, OK, OK),
    },
    "api_health": {
        # Open to a session or an ingest token (none is sent here); require_GET refuses HEAD.
        "GET": row(NO_TOKEN, OK, OK, OK, OK),
        **{method: everyone(NOT_ALLOWED) for method in ("HEAD", "POST", "PUT", "DELETE")},
    },
    # The Integration API's list: the same gate as api_health (tests/web/test_api_v1.py: tokens).
    "api_health_list": {
        "GET": row(NO_TOKEN, OK, OK, OK, OK),
        **{method: everyone(NOT_ALLOWED) for method in ("HEAD", "POST", "PUT", "DELETE")},
    },
    # The OpenAPI document: open to everyone, it holds no account's data.
    "api_openapi": {
        **{method: everyone(OK) for method in ("GET", "HEAD")},
        **{method: everyone(NOT_ALLOWED) for method in ("POST", "PUT", "DELETE")},
    },
    "export_health_csv": {
        # A session or a read token; nobody signed in and no token is sent to sign in. The
        # method is checked first, as on the API.
        "GET": signed_in(OK),
        **{method: everyone(NOT_ALLOWED) for method in ("HEAD", "POST", "PUT", "DELETE")},
    },
    "export_instance_types": {
        # The permission is checked before the method.
        "GET": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
        "HEAD": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_ALLOWED),
        "POST": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, STORED),
        "PUT": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_ALLOWED),
        "DELETE": row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_ALLOWED),
    },
    # Probes: no sign-in, GET and HEAD only (tests/web/test_ops_endpoints.py for the answers).
    "healthz": PROBE,
    "readyz": PROBE,
    # Off (404) until METRICS_TOKEN or METRICS_ALLOWED_IPS says who may scrape; the method is
    # checked first.
    "ops_metrics": {
        **{method: everyone(NOT_FOUND) for method in ("GET", "HEAD")},
        **{method: everyone(NOT_ALLOWED) for method in ("POST", "PUT", "DELETE")},
    },
}
# fmt: on


# --------------------------------------------------------------------------------------------------
# The URLs of the project


def url_names(patterns=None, namespace: str = "") -> set[str]:
    """Every URL name of the project; the admin site counts as one entry, an unnamed pattern
    by its route (so that it, too, needs a row)."""
    names: set[str] = set()
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == ADMIN:
                names.add(ADMIN)
            else:
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                names |= url_names(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            names.add(f"{namespace}{entry.name}" if entry.name else f"<unnamed {entry.pattern}>")
    return names


def test_every_url_of_the_project_has_a_row_in_the_matrix():
    names = url_names()
    assert sorted(names - MATRIX.keys()) == [], "new URLs: declare who may reach them in MATRIX"
    assert sorted(MATRIX.keys() - names) == [], "MATRIX names URLs that no longer exist"


def test_the_guard_notices_a_url_added_without_a_row():
    """What the guard above would see if someone added a page and forgot the matrix."""
    added = [*get_resolver().url_patterns, path("new-page/", lambda r: None, name="new_page")]
    assert url_names(added) - MATRIX.keys() == {"new_page"}


def test_every_row_declares_every_method_for_every_role():
    for name, methods in MATRIX.items():
        if name == ADMIN:
            continue
        assert set(methods) == set(METHODS), name
        for method, outcomes in methods.items():
            assert tuple(outcomes) == ROLES, (name, method)
            # A refusal that writes is the defect this file looks for, not an entry of it.
            assert not any(o.refusal and o.writes for o in outcomes.values()), (name, method)


# --------------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    users: dict[str, object]
    company: Company
    other_company: Company
    instance: Instance
    other_instance: Instance
    change: LabelChange
    alert: HealthAlert
    license: License
    export_dir: Path


@pytest.fixture
def world(db, settings, tmp_path) -> World:
    # The instance-type export writes files: into this test's folder, compared like a table.
    settings.EXPORT_DIR = tmp_path / "exports"
    users = {
        "viewer": make_user("viewer_user", "Viewer"),
        "csm": make_user("csm_user", "CSM"),
        "other_csm": make_user("other_csm", "CSM"),
        "ops": make_user("ops_user", "Ops", staff=True),
    }
    sub = SubscriptionFactory(company__csm=users["csm"], company__name="Owned Inc")
    instance = InstanceFactory(subscription=sub, instance_type="production")
    store_ping(instance, days_ago=3, refresh=False)
    other_sub = SubscriptionFactory(company__csm=users["other_csm"], company__name="Other Inc")
    other_instance = InstanceFactory(subscription=other_sub, instance_type="production")
    companies_refresh(company_ids=[sub.company_id, other_sub.company_id], history=False)
    change = label_change_request(
        instance=instance,
        field="instance_type",
        value="non_production",
        by=users["csm"],
        schedule=False,
    )
    # An open drop as the scoring worker raises it; how drops are raised is tests/scoring's.
    alert = HealthAlert.objects.create(
        company=sub.company, measure="license_utilization", from_color="Green", to_color="Red"
    )
    unmapped = store_ping(
        "uuid-unmapped-license",
        days_ago=1,
        license_md5="f" * 32,
        version="15.4.0-ee",
        refresh=False,
    )
    return World(
        users=users,
        company=sub.company,
        other_company=other_sub.company,
        instance=instance,
        other_instance=other_instance,
        change=change,
        alert=alert,
        license=License.objects.get(pk=unmapped.license_id),
        export_dir=settings.EXPORT_DIR,
    )


def url_of(name: str, w: World) -> str:
    kwargs = {
        "instance_edit": {"pk": w.company.pk, "instance_id": w.instance.pk},
        "label_apply_now": {"change_id": w.change.pk},
        "alert_close": {"alert_id": w.alert.pk},
        "license_map": {"license_id": w.license.pk},
        "api_health": {"crm_account_id": w.company.crm_account_id},
    }.get(name)
    if kwargs is None and name.startswith("account_"):
        kwargs = {"pk": w.company.pk}
    return reverse(name, kwargs=kwargs)


def _ping_json(w: World) -> bytes:
    """A later ping of the account's instance: stored when it is sent by someone allowed."""
    return orjson.dumps(
        payload(
            uuid=w.instance.uuid,
            hostname=w.instance.hostname,
            subscription_id=w.instance.subscription.name,
            recorded_at=timezone.now() - timedelta(days=1),
        )
    )


#: A valid body for each URL that reads one: a dict is sent as a multipart form, bytes as JSON.
#: Every other URL gets an empty form.
BODIES: dict[str, Callable[[World], dict | bytes]] = {
    "login": lambda w: {"username": "csm_user", "password": PASSWORD},
    "dashboard_columns": lambda w: {"columns": list(CHOOSABLE_COLUMNS[:2]), "next": "/"},
    "instance_edit": lambda w: {"instance_type": "obsolete", "health_inclusion": ""},
    "account_sentiment": lambda w: {"sentiment": "Red", "note": "renewal at risk"},
    "account_roi": lambda w: {"roi-roi": "Red", "roi-note": "no objective met"},
    "alert_close": lambda w: {"note": "seats cut at renewal", "next": "/alerts/"},
    "license_map": lambda w: {"subscription": w.company.subscriptions.get().name},
    "profile": lambda w: {"time_zone": "Asia/Tokyo"},
    "ping_upload": lambda w: {
        "files": [SimpleUploadedFile("ping.json", _ping_json(w), "application/json")]
    },
    "usage_data": _ping_json,
    "usage_ping_errors": lambda w: orjson.dumps(
        {"error": {"uuid": w.instance.uuid, "hostname": "h", "version": "16.5.1", "message": "x"}}
    ),
    "usage_ping_metadata": lambda w: orjson.dumps(
        {"metadata": {"uuid": w.instance.uuid, "metrics": [{"name": "version", "time_elapsed": 1}]}}
    ),
}


def send(client: Client, method: str, url: str, body: dict | bytes | None):
    """One request; a body-carrying method sends the URL's valid body, form-encoded or JSON."""
    if method in ("GET", "HEAD") or body is None:
        return client.generic(method, url)
    if isinstance(body, bytes):
        return client.generic(
            method, url, body, "application/json", headers={"Accept": "application/json"}
        )
    return client.generic(method, url, encode_multipart(BOUNDARY, body), MULTIPART_CONTENT)


def client_for(role: str, w: World, **kwargs) -> Client:
    client = Client(**kwargs)
    if role != "anonymous":
        client.force_login(w.users[role])
    return client


# --------------------------------------------------------------------------------------------------
# What changed


def snapshot(export_dir: Path) -> dict[str, str]:
    """A digest of every row of every model (sessions and django-axes' sign-in records aside:
    signing in and out write them), and of the export folder."""
    digests = {}
    for model in apps.get_models():
        if model is Session or model._meta.app_label == "axes":
            continue
        fields = [f.attname for f in model._meta.concrete_fields]
        rows = model._base_manager.order_by("pk").values_list(*fields)
        digests[model._meta.label_lower] = hashlib.sha256(repr(list(rows)).encode()).hexdigest()
    files = sorted(p.name for p in export_dir.glob("*")) if export_dir.exists() else []
    digests["files:exports"] = repr(files)
    return digests


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {key for key in before if before[key] != after[key]}


def _pending(w: World):
    return LabelChange.objects.pending().filter(instance=w.instance, field="instance_type")


#: The effect of each allowed write: ``check(world, user)`` holds after it.
WRITES: dict[str, Callable[[World, object], bool]] = {
    "login": lambda w, user: (
        get_user_model().objects.get(username="csm_user").last_login is not None
    ),
    "dashboard_columns": lambda w, user: (
        TableColumns.chosen(user=user, table="dashboard") == list(CHOOSABLE_COLUMNS[:2])
    ),
    "instance_edit": lambda w, user: [c.new_value for c in _pending(w)] == ["obsolete"],
    "account_sentiment": lambda w, user: Company.objects.get(pk=w.company.pk).sentiment == "Red",
    "account_roi": lambda w, user: Company.objects.get(pk=w.company.pk).roi == "Red",
    "label_apply_now": lambda w, user: (
        Instance.objects.get(pk=w.instance.pk).instance_type == "non_production"
        and not _pending(w).exists()
    ),
    "alert_close": lambda w, user: (
        HealthAlert.objects.get(pk=w.alert.pk).status == AlertStatus.CLOSED
    ),
    "license_map": lambda w, user: (
        License.objects.get(pk=w.license.pk).subscription_id == w.company.subscriptions.get().pk
    ),
    "ping_upload": lambda w, user: UsagePing.objects.filter(instance=w.instance).count() == 2,
    "profile": lambda w, user: UserPreferences.time_zone_of(user) == "Asia/Tokyo",
    "export_instance_types": lambda w, user: any(w.export_dir.glob("instance_types_*.csv")),
}


# --------------------------------------------------------------------------------------------------
# The matrix


def _cases():
    for name, methods in MATRIX.items():
        for method, outcomes in methods.items():
            for role, outcome in outcomes.items():
                yield pytest.param(name, method, role, outcome, id=f"{name}-{method}-{role}")


def check(response, outcome: Outcome, what: str) -> None:
    assert response.status_code == outcome.status, (
        f"{what}: expected {outcome}, got {response.status_code} {response.get('Location', '')}"
    )
    if outcome.sign_in:
        assert response["Location"].startswith(reverse("login") + "?next="), what
    elif outcome.to is not None:
        assert response["Location"] == outcome.to, what
    elif outcome.status == 302:
        assert not response["Location"].startswith(reverse("login")), what


@pytest.mark.parametrize(("name", "method", "role", "outcome"), _cases())
def test_permission_matrix(world, name, method, role, outcome):
    url = url_of(name, world)
    client = client_for(role, world)
    body = BODIES.get(name, lambda w: {})(world)
    before = snapshot(world.export_dir)

    response = send(client, method, url, body)

    what = f"{method} {url} as {role}"
    check(response, outcome, what)
    difference = changed(before, snapshot(world.export_dir))
    if outcome.writes is True:
        assert difference, f"{what}: declared a write, but nothing changed"
        user = world.users.get(role)
        assert WRITES[name](world, user), f"{what}: the write did not take effect"
    elif outcome.writes:
        assert difference == outcome.writes, f"{what}: changed {sorted(difference)}"
    else:
        assert difference == set(), f"{what} ({outcome}) changed {sorted(difference)}"


def test_the_snapshot_sees_a_write_to_any_watched_row_or_file(world):
    """The matrix's "unchanged" is only as good as this: each kind of write shows."""
    writes = {
        "accounts.company": lambda: Company.objects.filter(pk=world.company.pk).update(
            roi_note="x"
        ),
        "instances.instance": lambda: Instance.objects.filter(pk=world.instance.pk).update(
            health_inclusion="opt_out"
        ),
        "instances.labelchange": lambda: _pending(world).update(status="cancelled"),
        "scoring.healthalert": lambda: HealthAlert.objects.filter(pk=world.alert.pk).update(
            status="closed"
        ),
        "instances.license": lambda: License.objects.filter(pk=world.license.pk).update(
            subscription=world.company.subscriptions.get()
        ),
        "files:exports": lambda: (
            world.export_dir.mkdir(parents=True, exist_ok=True),
            (world.export_dir / "instance_types_2024-01-01.csv").write_text("x"),
        ),
    }
    for label, write in writes.items():
        before = snapshot(world.export_dir)
        write()
        assert changed(before, snapshot(world.export_dir)) == {label}


# --------------------------------------------------------------------------------------------------
# The admin site: one entry of the matrix


#: A 302 to the admin's own sign-in page, back to the page asked for: refused.
ADMIN_SIGN_IN = Outcome(302, sign_in=True, to="/admin/login/?next=")


#: (what, method, path, form data) → (anonymous, viewer, owning CSM, other CSM, ops).
ADMIN_CASES = {
    "index": (
        "GET",
        lambda w: "/admin/",
        lambda w: None,
        row(ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, OK),
    ),
    # The model pages are not login_not_required as the index is: nobody signed in meets the
    # portal's sign-in page first.
    "relabel_action": (
        "POST",
        lambda w: "/admin/instances/instance/",
        lambda w: {"action": "set_obsolete", "_selected_action": [str(w.instance.pk)]},
        row(SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, DONE),
    ),
    # The audit trail is read-only, for ops too.
    "delete_label_change": (
        "POST",
        lambda w: f"/admin/instances/labelchange/{w.change.pk}/delete/",
        lambda w: {"post": "yes"},
        row(SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, FORBIDDEN),
    ),
    # Background jobs (tests/scoring/test_admin_jobs.py): their pages answer 403, not the
    # admin's sign-in page, to anyone signed in but ops (a polling script cannot follow one).
    "job_progress": (
        "GET",
        lambda w: f"/admin/scoring/adminjob/{_finished_job().pk}/progress/",
        lambda w: None,
        row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "job_status": (
        "GET",
        lambda w: f"/admin/scoring/adminjob/{_finished_job().pk}/status/",
        lambda w: None,
        row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "recompute_every_company": (
        "POST",
        lambda w: "/admin/scoring/adminjob/recompute/",
        lambda w: {},
        row(SIGN_IN, FORBIDDEN, FORBIDDEN, FORBIDDEN, DONE),
    ),
    "recompute_action": (
        "POST",
        lambda w: "/admin/scoring/scoresnapshot/",
        lambda w: {
            "action": "recompute",
            "_selected_action": [str(ScoreSnapshot.objects.filter(company=w.company).get().pk)],
        },
        row(SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, ADMIN_SIGN_IN, DONE),
    ),
}


def _finished_job() -> AdminJob:
    return AdminJob.objects.create(kind=AdminJobKind.RECOMPUTE_ALL, state=AdminJobState.DONE)


def _job_queued(w: World) -> bool:
    # The task is published after the commit, which this test's transaction never makes.
    return AdminJob.objects.filter(kind=AdminJobKind.RECOMPUTE_ALL, state="queued").exists()


#: The effect of each allowed admin write.
ADMIN_WRITES: dict[str, Callable[[World], bool]] = {
    "relabel_action": lambda w: [c.new_value for c in _pending(w)] == ["obsolete"],
    "recompute_every_company": _job_queued,
    "recompute_action": _job_queued,
}


def _admin_cases():
    for what, (_method, _path, _body, outcomes) in ADMIN_CASES.items():
        for role, outcome in outcomes.items():
            yield pytest.param(what, role, outcome, id=f"admin-{what}-{role}")


@pytest.mark.parametrize(("what", "role", "outcome"), _admin_cases())
def test_admin_site_is_for_ops_only(world, what, role, outcome):
    method, path_of, body_of, _ = ADMIN_CASES[what]
    path = path_of(world)
    if outcome is ADMIN_SIGN_IN:
        outcome = Outcome(302, to=f"/admin/login/?next={path}")
    client = client_for(role, world)
    before = snapshot(world.export_dir)

    response = send(client, method, path, body_of(world))

    check(response, outcome, f"{method} {path} as {role}")
    difference = changed(before, snapshot(world.export_dir))
    if outcome.writes:
        assert ADMIN_WRITES[what](world), f"{method} {path} as {role}: no effect"
    else:
        assert difference == set(), f"{method} {path} as {role} changed {sorted(difference)}"


# --------------------------------------------------------------------------------------------------
# CSRF: the test client skips the check unless asked; a real browser's forms carry the token


def _csrf_cases():
    """Every form write, by someone allowed to make it (so only the missing token refuses it)."""
    for name, methods in MATRIX.items():
        post = methods.get("POST", {})
        writer = next((role for role in ("ops", "anonymous") if post.get(role, OK).writes), None)
        if writer is not None:
            yield pytest.param(name, writer, id=f"{name}-{writer}")


@pytest.mark.parametrize(("name", "role"), _csrf_cases())
def test_a_form_post_without_a_csrf_token_is_refused_and_changes_nothing(world, name, role):
    client = client_for(role, world, enforce_csrf_checks=True)
    before = snapshot(world.export_dir)

    response = send(client, "POST", url_of(name, world), BODIES.get(name, lambda w: {})(world))

    assert response.status_code == 403
    assert changed(before, snapshot(world.export_dir)) == set()


# --------------------------------------------------------------------------------------------------
# The ping endpoints: the 401 above is the token check, not the body


@pytest.mark.parametrize("name", ["usage_data", "usage_ping_errors", "usage_ping_metadata"])
def test_ping_endpoints_accept_the_same_body_with_an_ingest_token(world, name):
    _, secret = ingest_token_create(name="matrix")
    response = Client().post(
        reverse(name),
        BODIES[name](world),
        content_type="application/json",
        headers={"Accept": "application/json", "Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 201, response.content


# --------------------------------------------------------------------------------------------------
# Ids that do not exist, or do not belong together


UNKNOWN = 999_999


UNKNOWN_IDS = [
    ("account_summary", "GET", {"pk": UNKNOWN}),
    ("instance_edit", "GET", {"pk": UNKNOWN, "instance_id": UNKNOWN}),
    ("instance_edit", "POST", {"pk": UNKNOWN, "instance_id": UNKNOWN}),
    ("account_sentiment", "POST", {"pk": UNKNOWN}),
    ("account_roi", "POST", {"pk": UNKNOWN}),
    ("label_apply_now", "POST", {"change_id": UNKNOWN}),
    ("alert_close", "POST", {"alert_id": UNKNOWN}),
    ("license_map", "GET", {"license_id": UNKNOWN}),
    ("license_map", "POST", {"license_id": UNKNOWN}),
    ("api_health", "GET", {"crm_account_id": "no-such-account"}),
]


@pytest.mark.parametrize(
    ("name", "method", "kwargs"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in UNKNOWN_IDS],
)
def test_an_unknown_id_is_404_for_ops_and_changes_nothing(world, name, method, kwargs):
    client = client_for("ops", world)
    body = BODIES.get(name, lambda w: {})(world)
    before = snapshot(world.export_dir)

    response = send(client, method, reverse(name, kwargs=kwargs), body)

    assert response.status_code == 404
    assert changed(before, snapshot(world.export_dir)) == set()


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("role", "mix", "status"),
    [
        # Another account's instance under one's own account: not found there.
        ("csm", "own_account_their_instance", 404),
        ("ops", "own_account_their_instance", 404),
        # One's own instance under another's account: that account is not theirs to change.
        ("csm", "their_account_own_instance", 403),
    ],
)
def test_an_instance_is_edited_only_under_its_own_account(world, role, mix, status, method):
    pk, instance_id = {
        "own_account_their_instance": (world.company.pk, world.other_instance.pk),
        "their_account_own_instance": (world.other_company.pk, world.instance.pk),
    }[mix]
    url = reverse("instance_edit", kwargs={"pk": pk, "instance_id": instance_id})
    client = client_for(role, world)
    before = snapshot(world.export_dir)

    response = send(client, method, url, BODIES["instance_edit"](world))

    assert response.status_code == status
    assert changed(before, snapshot(world.export_dir)) == set()
