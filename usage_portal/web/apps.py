"""The page layer's app config: registers ``usage_portal.web`` for its start-up hook."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    """The page layer: not a domain app (no models); registered for its start-up hook."""

    name = "usage_portal.web"
    label = "web"
    verbose_name = "Pages"

    def ready(self) -> None:
        from usage_portal.web.kit.tables import install_signature_cache
        from usage_portal.web.ops.dbmetrics import db_metrics_install

        install_signature_cache()
        db_metrics_install()
