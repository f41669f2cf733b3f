from django.contrib import admin
from django.http import HttpRequest
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, XLSX

from .models import Contact, ContactType, CountryRegion, NumberSeries
from .resources import ContactResource


class PersonInline(admin.TabularInline):
    model = Contact
    fk_name = "company"
    verbose_name = "person"
    verbose_name_plural = "Persons at this company"
    fields = ("no", "first_name", "surname", "job_title", "email", "phone_no", "mobile_phone_no")
    readonly_fields = ("no",)
    extra = 0
    show_change_link = True


@admin.register(Contact)
class ContactAdmin(ImportExportModelAdmin):
    resource_classes = [ContactResource]
    formats = [CSV, XLSX]
    list_display = (
        "no",
        "name",
        "type",
        "company_name",
        "city",
        "country_region",
        "phone_no",
        "email",
        "salesperson_code",
        "privacy_blocked",
    )
    list_display_links = ("no", "name")
    list_filter = ("type", "city", "country_region", "salesperson_code", "privacy_blocked")
    search_fields = ("no", "name", "email", "search_email", "company_name")
    list_select_related = ("country_region",)
    list_per_page = 50
    autocomplete_fields = ("company",)
    readonly_fields = ("no", "search_email", "last_modified")
    fieldsets = (
        (
            "General",
            {
                "fields": (
                    "no",
                    "type",
                    ("first_name", "middle_name", "surname"),
                    "initials",
                    "name",
                    "name_2",
                    "job_title",
                    "company",
                    "company_name",
                    "salesperson_code",
                    "territory_code",
                    "last_modified",
                )
            },
        ),
        (
            "Address & Contact",
            {"fields": ("address", "address_2", ("post_code", "city"), "county", "country_region")},
        ),
        (
            "Communication",
            {
                "fields": (
                    "phone_no",
                    "mobile_phone_no",
                    "fax_no",
                    "email",
                    "email_2",
                    "search_email",
                    "home_page",
                )
            },
        ),
        ("Privacy", {"fields": ("privacy_blocked",)}),
    )

    def get_inlines(self, request: HttpRequest, obj: Contact | None = None):
        return [PersonInline] if obj is not None and obj.type == ContactType.COMPANY else []

    def get_search_results(self, request, queryset, search_term):
        # The Company No. lookup offers only companies.
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.GET.get("field_name") == "company":
            queryset = queryset.filter(type=ContactType.COMPANY)
        return queryset, may_have_duplicates


@admin.register(CountryRegion)
class CountryRegionAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(NumberSeries)
class NumberSeriesAdmin(admin.ModelAdmin):
    list_display = ("code", "description", "prefix", "digits", "last_no")
    readonly_fields = ("last_no",)
