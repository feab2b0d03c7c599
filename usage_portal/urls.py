"""Every route of the app, in one place."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from usage_portal.web import errors, sso
from usage_portal.web.alerts import views as alerts
from usage_portal.web.api import views as api
from usage_portal.web.c360 import views as c360
from usage_portal.web.dashboard import views as scoring_views
from usage_portal.web.ingest import views as ingest
from usage_portal.web.ops import views as ops
from usage_portal.web.profile import views as profile
from usage_portal.web.reports import views as reports
from usage_portal.web.throttle import token_throttled

# The admin's sign-in form obeys PASSWORD_LOGIN too: no second door for passwords.
admin.site.login_form = sso.PortalAdminAuthenticationForm

urlpatterns = [
    path("login/", sso.PortalLoginView.as_view(), name="login"),
    # Single sign-on (OpenID Connect, docs/sso.md): 404 until OIDC_RP_CLIENT_ID is set.
    path("oidc/authenticate/", sso.sso_start, name="oidc_authentication_init"),
    path("oidc/callback/", sso.sso_callback, name="oidc_authentication_callback"),
    path("login/refused/", sso.sso_refused, name="sso_refused"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Product Usage Reporting dashboard
    path("", scoring_views.dashboard, name="dashboard"),
    path("dashboard/columns/", scoring_views.dashboard_columns, name="dashboard_columns"),
    # Account C360
    path("accounts/<int:pk>/", c360.summary, name="account_summary"),
    path("accounts/<int:pk>/adoption/", c360.adoption, name="account_adoption"),
    path("accounts/<int:pk>/trends/", c360.trends, name="account_trends"),
    path("accounts/<int:pk>/instances/", c360.instances, name="account_instances"),
    path(
        "accounts/<int:pk>/instances/<int:instance_id>/edit/",
        c360.instance_edit,
        name="instance_edit",
    ),
    path("accounts/<int:pk>/scorecard/", c360.scorecard, name="account_scorecard"),
    path("accounts/<int:pk>/sentiment/", c360.sentiment, name="account_sentiment"),
    path("accounts/<int:pk>/roi/", c360.roi, name="account_roi"),
    path(
        "label-changes/<int:change_id>/apply/", c360.label_change_apply_now, name="label_apply_now"
    ),
    # Health drops
    path("alerts/", alerts.worklist, name="alerts"),
    path("alerts/<int:alert_id>/close/", alerts.close, name="alert_close"),
    # Reports
    path("burndown/", reports.burndown, name="burndown"),
    path("reports/versions/", reports.versions, name="versions_report"),
    path("data-quality/", reports.data_quality, name="data_quality"),
    path("data-quality/licenses/<int:license_id>/map/", reports.license_map, name="license_map"),
    path("metrics/", reports.metrics_dictionary, name="metrics_dictionary"),
    # The signed-in person's own settings: their time zone
    path("profile/", profile.profile, name="profile"),
    # Data in
    path("usage_data", token_throttled(ingest.usage_data), name="usage_data"),
    path("usage_ping_errors", token_throttled(ingest.usage_ping_errors), name="usage_ping_errors"),
    path(
        "usage_ping_metadata",
        token_throttled(ingest.usage_ping_metadata),
        name="usage_ping_metadata",
    ),
    path("usage_data/new", ingest.ping_upload, name="ping_upload"),
    # Data out: the Integration API (docs/api.md); usage_portal.web.api.access.read_api is its
    # one gate, the token throttle included.
    path("api/v1/openapi.json", api.openapi_json, name="api_openapi"),
    path("api/v1/accounts/health", api.accounts_health, name="api_health_list"),
    path("api/v1/accounts/<str:crm_account_id>/health", api.account_health, name="api_health"),
    path("exports/health.csv", api.health_csv, name="export_health_csv"),
    path("exports/instance-types/", api.instance_types, name="export_instance_types"),
    # Operations: probes and Prometheus, no sign-in (docs/operations.md)
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("-/metrics", ops.metrics, name="ops_metrics"),
]

# Error pages in the portal's layout, with the reason a refusal or a 404 was raised with. The
# 500 page stays Django's server_error (a static template, no request, no database), or the 503
# of an outage that middleware outside the view ran into.
handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
