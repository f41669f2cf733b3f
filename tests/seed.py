"""The rows the migrations seed (contact number series, countries), for transactional tests.

A transactional test (live_server, transaction=True) ends by flushing every table, migration data
included, so a later one finds no number series for a new contact. serialized_rollback would
restore it but collides with the content types post_migrate re-creates after such a flush; loading
the data again through the migration's own (idempotent) function does not."""

from importlib import import_module

from django.apps import apps


def reseed_migration_data() -> None:
    import_module("contacts.migrations.0002_countries_and_number_series").load(apps, None)
