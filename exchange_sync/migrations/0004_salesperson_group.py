"""The Microsoft 365 email becomes an administrator's permission, and the Salesperson group holds
exactly what a salesperson's pages need: the contact master (view, change) and their own sync."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SALESPERSON = "Salesperson"
SALESPERSON_PERMISSIONS = [
    ("contacts", "view_contact"),
    ("contacts", "change_contact"),
    ("exchange_sync", "run_contact_sync"),
]


def create_salesperson_group(apps, *, db):
    # On a fresh database Django creates permissions only after the last migration (post_migrate),
    # so create those of the apps the group needs now.
    for app_label in {app_label for app_label, _ in SALESPERSON_PERMISSIONS}:
        app_config = apps.get_app_config(app_label)
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True  # historical apps have none
        create_permissions(app_config, verbosity=0, using=db, apps=apps)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(db).get_or_create(name=SALESPERSON)
    group.permissions.add(
        *(
            Permission.objects.using(db).get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in SALESPERSON_PERMISSIONS
        )
    )
    return group


def forwards(apps, schema_editor):
    db = schema_editor.connection.alias
    group = create_salesperson_group(apps, db=db)
    # Staff who sync already (a Microsoft 365 email on their card) keep their pages.
    User = apps.get_model("auth", "User")
    group.user_set.add(
        *User.objects.using(db).filter(is_staff=True, is_superuser=False, user_card__microsoft_365_email__gt="")
    )


def backwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=SALESPERSON).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contacts", "0002_countries_and_number_series"),
        ("exchange_sync", "0003_contactlink_email"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="usercard",
            options={
                "permissions": [("change_microsoft_365_email", "Can change the Microsoft 365 email of a user")],
                "verbose_name": "user card",
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
