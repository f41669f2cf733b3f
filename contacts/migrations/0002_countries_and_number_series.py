from django.db import migrations

from contacts.reference_data import load_reference_data


def load(apps, schema_editor):
    load_reference_data(apps)


def unload(apps, schema_editor):
    apps.get_model("contacts", "NumberSeries").objects.filter(code="CONT").delete()


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
