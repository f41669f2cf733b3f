from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExchangeSyncConfig(AppConfig):
    name = "exchange_sync"
    verbose_name = "Microsoft 365 sync"

    def ready(self) -> None:
        from contacts.changes import contacts_changed

        from .services import contact_sync, job_queue, live_updates
        from .services.retention import ensure_prune_schedule

        post_migrate.connect(ensure_prune_schedule, sender=self, dispatch_uid="exchange_sync_prune_schedule")
        post_migrate.connect(
            live_updates.ensure_subscription_schedule, sender=self, dispatch_uid="exchange_sync_live_schedule"
        )
        contacts_changed.connect(live_updates.contacts_changed, dispatch_uid=live_updates.CONTACTS_RECEIVER)
        contact_sync.run_finished.connect(live_updates.after_run, dispatch_uid="exchange_sync_live_after_run")
        contact_sync.run_finished.connect(job_queue.after_run, dispatch_uid="exchange_sync_pass_after_run")
