"""Deterministic demo contacts: 30 companies and about 200 persons in several countries."""

import random
import re
import unicodedata

from django.core.management.base import BaseCommand
from django.db import transaction
from faker import Faker

from contacts.models import Contact, ContactType

LOCALES = {
    "GB": "en_GB",
    "US": "en_US",
    "DE": "de_DE",
    "FR": "fr_FR",
    "NL": "nl_NL",
    "DK": "da_DK",
    "ES": "es_ES",
}
SALESPEOPLE = ["AH", "JR", "PS", "MD", "BC"]
TERRITORIES = {"GB": "UK", "US": "NA", "DE": "EU", "FR": "EU", "NL": "EU", "DK": "NORDIC", "ES": "EU"}
INDUSTRY_WORDS = ["Engines", "Logistics", "Analytics", "Foods", "Textiles", "Robotics", "Ceramics", "Optics"]


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", plain.lower())


class Command(BaseCommand):
    help = "Load demo contacts (once: does nothing when contacts already exist)."

    def add_arguments(self, parser):
        parser.add_argument("--companies", type=int, default=30)
        parser.add_argument("--persons", type=int, default=200)
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, companies: int, persons: int, seed: int, **options):
        if Contact.objects.exists():
            self.stdout.write("Contacts already exist; demo data not loaded.")
            return
        rng = random.Random(seed)
        fakers = {code: Faker(locale) for code, locale in LOCALES.items()}
        for i, faker in enumerate(fakers.values()):
            faker.seed_instance(seed + i)
        with transaction.atomic():
            company_rows = [self._company(rng, fakers, i) for i in range(companies)]
            Contact.objects.bulk_create(company_rows)
            person_rows = [self._person(rng, fakers, rng.choice(company_rows)) for _ in range(persons)]
            Contact.objects.bulk_create(person_rows)
        self.stdout.write(f"Loaded {companies} companies and {persons} persons.")

    def _company(self, rng: random.Random, fakers: dict[str, Faker], index: int) -> Contact:
        country = list(LOCALES)[index % len(LOCALES)]
        faker = fakers[country]
        name = f"{faker.last_name()} {rng.choice(INDUSTRY_WORDS)}"[:100]
        return Contact(
            type=ContactType.COMPANY,
            name=name,
            address=faker.street_address()[:100],
            city=faker.city()[:30],
            post_code=faker.postcode()[:20],
            country_region_id=country,
            phone_no=re.sub(r"[A-Za-z]", "", faker.phone_number())[:30],
            home_page=f"https://www.{ascii_slug(name)}.example",
            salesperson_code=rng.choice(SALESPEOPLE),
            territory_code=TERRITORIES[country],
        )

    def _person(self, rng: random.Random, fakers: dict[str, Faker], company: Contact) -> Contact:
        faker = fakers[company.country_region_id]
        first, last = faker.first_name()[:30], faker.last_name()[:30]
        domain = f"{ascii_slug(company.name)}.example"
        return Contact(
            type=ContactType.PERSON,
            first_name=first,
            surname=last,
            initials=f"{first[:1]}{last[:1]}".upper(),
            job_title=faker.job()[:30],
            company=company,
            address=company.address,
            city=company.city,
            post_code=company.post_code,
            country_region_id=company.country_region_id,
            phone_no=company.phone_no,
            mobile_phone_no=re.sub(r"[A-Za-z]", "", faker.phone_number())[:30],
            email=f"{ascii_slug(first)}.{ascii_slug(last)}{rng.randint(1, 99)}@{domain}"[:80],
            salesperson_code=company.salesperson_code,
            territory_code=company.territory_code,
            privacy_blocked=rng.random() < 0.03,
        )
