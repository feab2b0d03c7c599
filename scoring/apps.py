from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        # Imported here: a listener module imports models, which must wait for the app registry.
        from accounts.changes import data_changed
        from scoring.listeners import refresh_on_change

        data_changed.connect(refresh_on_change, dispatch_uid="scoring.refresh_on_change")
