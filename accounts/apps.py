from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from .roles import sync_roles

        # Permissions exist only after migrate, so the groups are synced right after it.
        post_migrate.connect(sync_roles, dispatch_uid="accounts.sync_roles")
