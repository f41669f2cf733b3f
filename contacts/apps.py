from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_delete, post_migrate, post_save


def _reload_reference_data(sender, apps=global_apps, **kwargs) -> None:
    # `migrate` passes the migrated state's apps; `flush` passes none.
    from .reference_data import load_reference_data

    load_reference_data(apps)


class ContactsConfig(AppConfig):
    name = "contacts"
    verbose_name = "Contacts"

    def ready(self) -> None:
        from .changes import announce_written

        post_migrate.connect(_reload_reference_data, sender=self)
        contact = self.get_model("Contact")
        post_save.connect(announce_written, sender=contact, dispatch_uid="contacts_announce_saved")
        post_delete.connect(announce_written, sender=contact, dispatch_uid="contacts_announce_deleted")
