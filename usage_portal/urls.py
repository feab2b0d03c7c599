"""Every route of the app, in one place."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from usage_portal.web import errors
from usage_portal.web.alerts import views as alerts
from usage_portal.web.api import views as api
from usage_portal.web.c360 import views as c360
from usage_portal.web.dashboard import views as scoring_views
from usage_portal.web.ingest import views as ingest
from usage_portal.web.reports import views as reports

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
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
    # Data in
    path("usage_data", ingest.usage_data, name="usage_data"),
    path("usage_ping_errors", ingest.usage_ping_errors, name="usage_ping_errors"),
    path("usage_ping_metadata", ingest.usage_ping_metadata, name="usage_ping_metadata"),
    path("usage_data/new", ingest.ping_upload, name="ping_upload"),
    # Data out
    path("api/v1/accounts/<str:crm_account_id>/health", api.account_health, name="api_health"),
    path("exports/health.csv", api.health_csv, name="export_health_csv"),
    path("exports/instance-types/", api.instance_types, name="export_instance_types"),
]

# Error pages in the portal's layout, with the reason a refusal or a 404 was raised with. The
# 500 page stays Django's server_error: a static template, no request, no database.
handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
