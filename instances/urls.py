from django.urls import path

from . import views

urlpatterns = [
    path("usage_data", views.usage_data, name="usage_data"),
    path("usage_ping_errors", views.usage_ping_errors, name="usage_ping_errors"),
    path("usage_ping_metadata", views.usage_ping_metadata, name="usage_ping_metadata"),
    path("usage_data/new", views.ping_upload, name="ping_upload"),
]
