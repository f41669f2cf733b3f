from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _reload_reference_data(sender, apps=global_apps, **kwargs) -> None:
    # `migrate` passes the migrated state's apps; `flush` passes none.
    from .reference_data import load_reference_data

    load_reference_data(apps)


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Contacts"

    def ready(self) -> None:
        post_migrate.connect(_reload_reference_data, sender=self)
