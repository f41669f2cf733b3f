"""Rows every database needs: the ISO 3166 countries/regions and the contact number series.

Loaded by the data migration, and again after every `post_migrate` (idempotent: existing rows are
left as they are), so a database flushed by `flush` or a transactional test gets them back, as
Django does for content types and permissions."""

import csv
from pathlib import Path

COUNTRIES_CSV = Path(__file__).resolve().parent / "data" / "iso3166_countries.csv"


def load_reference_data(apps) -> None:
    """`apps`: the app registry to take models from (a migration's historical one, or the live one)."""
    CountryRegion = apps.get_model("contacts", "CountryRegion")
    NumberSeries = apps.get_model("contacts", "NumberSeries")
    if not CountryRegion.objects.exists():
        with COUNTRIES_CSV.open(newline="", encoding="utf-8") as f:
            rows = [CountryRegion(code=row["code"], name=row["name"]) for row in csv.DictReader(f)]
        CountryRegion.objects.bulk_create(rows, ignore_conflicts=True)
    NumberSeries.objects.get_or_create(
        code="CONT", defaults={"description": "Contacts", "prefix": "CT", "digits": 6}
    )
