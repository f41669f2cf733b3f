import csv
from pathlib import Path

from django.db import migrations

COUNTRIES_CSV = Path(__file__).resolve().parent.parent / "data" / "iso3166_countries.csv"


def load(apps, schema_editor):
    CountryRegion = apps.get_model("contacts", "CountryRegion")
    NumberSeries = apps.get_model("contacts", "NumberSeries")
    with COUNTRIES_CSV.open(newline="", encoding="utf-8") as f:
        rows = [CountryRegion(code=row["code"], name=row["name"]) for row in csv.DictReader(f)]
    CountryRegion.objects.bulk_create(rows, ignore_conflicts=True)
    NumberSeries.objects.get_or_create(
        code="CONT", defaults={"description": "Contacts", "prefix": "CT", "digits": 6}
    )


def unload(apps, schema_editor):
    apps.get_model("contacts", "NumberSeries").objects.filter(code="CONT").delete()


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
