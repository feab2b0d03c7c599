from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        # Imported here: a listener module imports models, which must wait for the app registry.
        from celery.signals import task_success, worker_ready

        from accounts.changes import data_changed, data_changing
        from scoring.jobruns import beat_task_succeeded
        from scoring.listeners import record_pending, refresh_on_change, sync_on_worker_ready

        data_changing.connect(record_pending, dispatch_uid="scoring.record_pending")
        data_changed.connect(refresh_on_change, dispatch_uid="scoring.refresh_on_change")
        worker_ready.connect(sync_on_worker_ready, dispatch_uid="scoring.sync_on_worker_ready")
        task_success.connect(beat_task_succeeded, dispatch_uid="scoring.beat_task_succeeded")
