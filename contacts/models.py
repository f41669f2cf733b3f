"""The business contact master, after Business Central's Contact table (5050).

Field lengths are those of Business Central's Contact table (Name 100, First Name 30, City 30,
E-Mail 80, ...), so anything that fits here fits there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from . import changes
from .text import storable_text

CONTACT_SERIES = "CONT"

phone_validator = RegexValidator(
    regex=r"^[^A-Za-z]*$",
    message="A phone number cannot contain letters.",
    code="phone_letters",
)


def normalize_email(value: str | None) -> str:
    """The form an address is compared in: no surrounding space, lower case."""
    return (value or "").strip().lower()


def person_name(first_name: str, middle_name: str, surname: str) -> str:
    """Business Central's Name for a person: the name parts joined by single spaces."""
    return " ".join(part.strip() for part in (first_name, middle_name, surname) if part and part.strip())


class CountryRegion(models.Model):
    code = models.CharField("Code", max_length=10, primary_key=True)
    name = models.CharField("Name", max_length=50)

    class Meta:
        ordering = ["code"]
        verbose_name = "country/region"
        verbose_name_plural = "countries/regions"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class NumberSeries(models.Model):
    """Business Central's No. Series: a prefix and a counter handed out under a row lock."""

    code = models.CharField(max_length=20, primary_key=True)
    description = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=10)
    digits = models.PositiveSmallIntegerField(default=6)
    last_no = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "number series"
        verbose_name_plural = "number series"

    def __str__(self) -> str:
        return self.code

    @classmethod
    def take(cls, code: str, count: int = 1) -> list[str]:
        """Reserve `count` consecutive numbers. The UPDATE holds the row until the surrounding
        transaction ends, so two writers never receive the same number (PostgreSQL row lock;
        SQLite's single writer)."""
        with transaction.atomic():
            if not cls.objects.filter(code=code).update(last_no=F("last_no") + count):
                raise LookupError(f"No number series {code!r}")
            series = cls.objects.get(code=code)
        first = series.last_no - count + 1
        return [f"{series.prefix}{n:0{series.digits}d}" for n in range(first, series.last_no + 1)]


class ContactType(models.TextChoices):
    PERSON = "person", "Person"
    COMPANY = "company", "Company"


class ContactQuerySet(models.QuerySet["Contact"]):
    """Every bulk path the application uses stamps last_modified, as Business Central's OnModify
    does, so a Sync never misses a change made in bulk, and announces the contacts it wrote (signals
    do not fire for these)."""

    def update(self, **kwargs: Any) -> int:
        kwargs = {key: storable_text(v) if isinstance(v, str) else v for key, v in kwargs.items()}
        kwargs.setdefault("last_modified", timezone.now())
        with transaction.atomic(using=self.db):
            # Read first: the UPDATE may move the rows out of this queryset's own filter.
            pairs = list(self.values_list("pk", "no"))
            updated = super().update(**kwargs)
        changes.announce(pairs=pairs, using=self.db)
        return updated

    def delete(self) -> tuple[int, dict[str, int]]:
        with transaction.atomic(using=self.db):
            pairs = list(self.values_list("pk", "no"))
            deleted = super().delete()
        changes.announce(pairs=pairs, using=self.db)
        return deleted

    def bulk_update(
        self, objs: Iterable[Contact], fields: Sequence[str], batch_size: int | None = None
    ) -> int:
        objs = list(objs)
        now = timezone.now()
        for obj in objs:
            obj.apply_derived_fields()
            obj.last_modified = now
        fields = list(dict.fromkeys([*fields, "name", "search_email", "company_name", "last_modified"]))
        # Django writes each batch through this queryset's update(), which announces the rows.
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def bulk_create(self, objs: Iterable[Contact], *args: Any, **kwargs: Any) -> list[Contact]:
        objs = list(objs)
        numbers = iter(NumberSeries.take(CONTACT_SERIES, sum(1 for o in objs if not o.no)))
        now = timezone.now()
        for obj in objs:
            obj.no = obj.no or next(numbers)
            obj.apply_derived_fields()
            obj.last_modified = now
        created = super().bulk_create(objs, *args, **kwargs)
        changes.announce(pairs=((obj.pk, obj.no) for obj in created), using=self.db)
        return created

    def persons(self) -> ContactQuerySet:
        return self.filter(type=ContactType.PERSON)


class Contact(models.Model):
    no = models.CharField("No.", max_length=20, unique=True, blank=True, editable=False)
    type = models.CharField("Type", max_length=10, choices=ContactType.choices, default=ContactType.PERSON)
    name = models.CharField("Name", max_length=100, blank=True, db_index=True)
    name_2 = models.CharField("Name 2", max_length=50, blank=True)
    first_name = models.CharField("First Name", max_length=30, blank=True)
    middle_name = models.CharField("Middle Name", max_length=30, blank=True)
    surname = models.CharField("Surname", max_length=30, blank=True)
    initials = models.CharField("Initials", max_length=30, blank=True)
    job_title = models.CharField("Job Title", max_length=30, blank=True)
    company = models.ForeignKey(
        "self",
        verbose_name="Company No.",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="persons",
        limit_choices_to={"type": ContactType.COMPANY},
    )
    company_name = models.CharField("Company Name", max_length=100, blank=True)
    address = models.CharField("Address", max_length=100, blank=True)
    address_2 = models.CharField("Address 2", max_length=50, blank=True)
    city = models.CharField("City", max_length=30, blank=True)
    post_code = models.CharField("Post Code", max_length=20, blank=True)
    county = models.CharField("County", max_length=30, blank=True)
    country_region = models.ForeignKey(
        CountryRegion, verbose_name="Country/Region Code", null=True, blank=True, on_delete=models.PROTECT
    )
    phone_no = models.CharField("Phone No.", max_length=30, blank=True, validators=[phone_validator])
    mobile_phone_no = models.CharField(
        "Mobile Phone No.", max_length=30, blank=True, validators=[phone_validator]
    )
    fax_no = models.CharField("Fax No.", max_length=30, blank=True, validators=[phone_validator])
    email = models.EmailField("E-Mail", max_length=80, blank=True)
    email_2 = models.EmailField("E-Mail 2", max_length=80, blank=True)
    home_page = models.CharField("Home Page", max_length=255, blank=True)
    salesperson_code = models.CharField("Salesperson Code", max_length=20, blank=True, db_index=True)
    territory_code = models.CharField("Territory Code", max_length=10, blank=True)
    privacy_blocked = models.BooleanField("Privacy Blocked", default=False)
    search_email = models.CharField("Search E-Mail", max_length=80, blank=True, editable=False, db_index=True)
    last_modified = models.DateTimeField(
        "Last Date Modified", default=timezone.now, editable=False, db_index=True
    )

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["no"]
        indexes = [models.Index(fields=["type", "privacy_blocked"], name="contact_scope_idx")]

    def __str__(self) -> str:
        return f"{self.no} {self.name}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            if not self.no:
                self.no = NumberSeries.take(CONTACT_SERIES)[0]
            self.apply_derived_fields()
            self.last_modified = timezone.now()
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {
                    *update_fields,
                    "name",
                    "search_email",
                    "company_name",
                    "last_modified",
                }
            name_changed = (
                self.type == ContactType.COMPANY
                and self.pk is not None
                and (Contact.objects.filter(pk=self.pk).exclude(name=self.name).exists())
            )
            super().save(*args, **kwargs)
            if name_changed:
                # Company Name follows the company, as in Business Central.
                self.persons.exclude(company_name=self.name).update(company_name=self.name)
        # Outside the atomic block: the caller's savepoint holds the announcement (contacts.changes).
        changes.announce(pairs=[(self.pk, self.no)], using=kwargs.get("using") or self._state.db)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        pair = (self.pk, self.no)
        deleted = super().delete(*args, **kwargs)
        changes.announce(pairs=[pair], using=kwargs.get("using") or self._state.db)
        return deleted

    def apply_derived_fields(self) -> None:
        """Fields Business Central computes: Name for a person, Search E-Mail, Company Name. Every
        write path calls this first, so it also removes what a database cannot store from the text."""
        for field in self._meta.concrete_fields:
            value = getattr(self, field.attname)
            if isinstance(field, models.CharField) and isinstance(value, str):
                setattr(self, field.attname, storable_text(value))
        if self.type == ContactType.PERSON and not self.name:
            self.name = person_name(self.first_name, self.middle_name, self.surname)[:100]
        self.search_email = normalize_email(self.email)[:80]
        if self.type == ContactType.COMPANY:
            self.company = None
            self.company_name = self.name
        elif self.company is not None:
            self.company_name = self.company.name

    def clean(self) -> None:
        if self.company is not None:
            if self.company.type != ContactType.COMPANY:
                raise ValidationError({"company": "Company No. must be a contact of type Company."})
            if self.pk is not None and self.company.pk == self.pk:
                raise ValidationError({"company": "A contact cannot be its own company."})
        if self.type == ContactType.PERSON and not (
            self.name or person_name(self.first_name, self.middle_name, self.surname)
        ):
            raise ValidationError({"name": "Enter a name, or a first name or surname to build it from."})
        if self.type == ContactType.COMPANY and not self.name:
            raise ValidationError({"name": "A company needs a name."})
