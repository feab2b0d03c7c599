from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        from usage_portal.web.dashboard.tables import install_signature_cache

        install_signature_cache()
