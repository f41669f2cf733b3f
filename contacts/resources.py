"""Contacts as a spreadsheet, as Business Central's "Edit in Excel" shows them.

Columns carry the field captions. A row with a No. updates that contact; a row without one creates
a contact, which takes the next number from the CONT series when it is saved. Rows are saved one by
one through Contact.save (no bulk path), so each gets its number and its Last Date Modified, and
the next Sync sends it. One bad row and nothing is imported (one transaction, rolled back).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from .models import Contact, ContactType, CountryRegion

# The columns, in Business Central's order; a column is headed by the field's caption.
COLUMNS = (
    "no",
    "type",
    "name",
    "name_2",
    "first_name",
    "middle_name",
    "surname",
    "initials",
    "job_title",
    "company",
    "company_name",
    "address",
    "address_2",
    "post_code",
    "city",
    "county",
    "country_region",
    "phone_no",
    "mobile_phone_no",
    "fax_no",
    "email",
    "email_2",
    "home_page",
    "salesperson_code",
    "territory_code",
    "privacy_blocked",
)


def caption(name: str) -> str:
    return str(Contact._meta.get_field(name).verbose_name)


def captioned(error: ValidationError) -> ValidationError:
    """The same errors, each message starting with the caption of the field it is about."""
    return ValidationError(
        {
            name: [f"{caption(name) if name in COLUMNS else name}: {message}" for message in messages]
            for name, messages in error.message_dict.items()
        }
    )


class TypeWidget(widgets.Widget):
    """Type as Business Central shows it: Person or Company."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> str:
        text = str(value or "").strip().lower()
        if not text:
            return ContactType.PERSON
        for choice in ContactType:
            if text in (choice.value, choice.label.lower()):
                return choice.value
        raise ValueError(f"{value!r} is not a type; enter Person or Company.")

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return ContactType(value).label if value else ""


class YesNoWidget(widgets.BooleanWidget):
    """An empty cell is No, as Business Central's Boolean fields are."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> bool:
        return bool(super().clean(value, row, **kwargs))


class CountryRegionWidget(widgets.ForeignKeyWidget):
    def __init__(self) -> None:
        super().__init__(CountryRegion, field="code")

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> CountryRegion | None:
        code = str(value or "").strip().upper()
        if not code:
            return None
        try:
            return CountryRegion.objects.get(code=code)
        except CountryRegion.DoesNotExist:
            raise ValueError(f"There is no country/region with the code {code!r}.") from None


class CompanyNoWidget(widgets.ForeignKeyWidget):
    def __init__(self) -> None:
        super().__init__(Contact, field="no")

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Contact | None:
        number = str(value or "").strip()
        if not number:
            return None
        try:
            return Contact.objects.get(no=number, type=ContactType.COMPANY)
        except Contact.DoesNotExist:
            raise ValueError(f"There is no company contact with the No. {number!r}.") from None


class ContactResource(resources.ModelResource):
    no = fields.Field(attribute="no", column_name=caption("no"))
    type = fields.Field(attribute="type", column_name=caption("type"), widget=TypeWidget())
    company = fields.Field(attribute="company", column_name=caption("company"), widget=CompanyNoWidget())
    # Company Name is read in before_save_instance: it names a company only when Company No. is empty.
    company_name = fields.Field(attribute="company_name", column_name=caption("company_name"), readonly=True)
    country_region = fields.Field(
        attribute="country_region", column_name=caption("country_region"), widget=CountryRegionWidget()
    )
    privacy_blocked = fields.Field(
        attribute="privacy_blocked", column_name=caption("privacy_blocked"), widget=YesNoWidget()
    )

    class Meta:
        model = Contact
        fields = COLUMNS
        import_id_fields = ("no",)
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True
        use_bulk = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, field in self.fields.items():
            if field.column_name == name:
                field.column_name = caption(name)

    def import_data(self, dataset: Any, **kwargs: Any) -> Any:
        # Rows with errors in words count as failures too, so one of them rolls back every row.
        kwargs["rollback_on_validation_errors"] = True
        kwargs["use_transactions"] = True
        return super().import_data(dataset, **kwargs)

    def get_instance(self, instance_loader: Any, row: Any) -> Contact | None:
        number = str(row.get(caption("no")) or "").strip()
        if not number:
            return None
        contact = Contact.objects.filter(no=number).first()
        if contact is None:
            message = f"There is no contact with the No. {number!r}; leave No. empty to create one."
            raise captioned(ValidationError({"no": message}))
        return contact

    def import_instance(self, instance: Contact, row: Any, **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if "company" not in errors:
            try:
                self.resolve_company_name(instance, row)
            except ValidationError as error:
                errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def resolve_company_name(self, instance: Contact, row: Any) -> None:
        """A person's Company Name, with Company No. empty, names the company: exactly one company
        contact must have that name. An unchanged name needs no company (it may be free text)."""
        name = str(row.get(caption("company_name")) or "").strip()
        if instance.type != ContactType.PERSON or instance.company is not None:
            return
        if not name:
            instance.company_name = ""
            return
        if name == instance.company_name:
            return
        matches = list(Contact.objects.filter(type=ContactType.COMPANY, name__iexact=name)[:2])
        if not matches:
            raise ValidationError({"company_name": f"No company contact is named {name!r}."})
        if len(matches) > 1:
            raise ValidationError(
                {"company_name": f"Several company contacts are named {name!r}; enter the Company No."}
            )
        instance.company = matches[0]

    def validate_instance(
        self, instance: Contact, import_validation_errors: Any = None, **kwargs: Any
    ) -> None:
        try:
            super().validate_instance(instance, import_validation_errors, **kwargs)
        except ValidationError as error:
            raise captioned(error) from None
