from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExchangeSyncConfig(AppConfig):
    name = "exchange_sync"
    verbose_name = "Microsoft 365 sync"

    def ready(self) -> None:
        from .services.retention import ensure_prune_schedule

        post_migrate.connect(ensure_prune_schedule, sender=self, dispatch_uid="exchange_sync_prune_schedule")
