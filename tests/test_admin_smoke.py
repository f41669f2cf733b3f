"""Every registered admin page opens: changelist, add and change, for every model."""

import pytest
from django.contrib import admin
from django.urls import reverse

from contacts.models import Contact
from tests.factories import CompanyFactory, PersonFactory, UserCardFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each(admin_user):
    """At least one row of every registered model, so every change page can be opened."""
    company = CompanyFactory()
    PersonFactory(company=company)
    UserCardFactory(user=admin_user)
    from tests.factories import populate_sync_rows

    populate_sync_rows(admin_user)


def registered_models():
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m._meta.label)
def test_admin_pages_open(admin_client, one_of_each, model):
    opts = model._meta
    changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    model_admin = admin.site._registry[model]
    request = changelist.wsgi_request
    if model_admin.has_add_permission(request):
        assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 200
    obj = model_admin.get_queryset(request).first()
    if obj is not None:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert admin_client.get(url).status_code == 200


def test_contact_add_form_saves(admin_client):
    company = CompanyFactory(name="Analytical Engines")
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "type": "person",
            "first_name": "Ada",
            "surname": "Lovelace",
            "company": company.pk,
            "email": "ada@example.com",
            "phone_no": "+44 20 7946 0000",
            "country_region": "GB",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.name, ada.company_name, ada.no) == ("Ada Lovelace", "Analytical Engines", "CT000002")


def test_contact_form_shows_business_central_errors(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {"type": "person", "first_name": "Ada", "email": "ada@", "phone_no": "call me"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "email" in errors and errors["phone_no"] == ["A phone number cannot contain letters."]


def test_contact_list_searches_and_filters(admin_client):
    PersonFactory(first_name="Grace", surname="Hopper", email="grace@navy.test", city="Arlington")
    PersonFactory(first_name="Alan", surname="Turing", email="alan@bletchley.test", city="London")
    url = reverse("admin:contacts_contact_changelist")
    found = admin_client.get(url, {"q": "navy.test"})
    assert b"Grace Hopper" in found.content and b"Alan Turing" not in found.content
    filtered = admin_client.get(url, {"city": "London"})
    assert b"Alan Turing" in filtered.content and b"Grace Hopper" not in filtered.content


def test_company_page_lists_its_persons(admin_client):
    company = CompanyFactory(name="Bletchley Park")
    PersonFactory(first_name="Alan", surname="Turing", company=company)
    page = admin_client.get(reverse("admin:contacts_contact_change", args=[company.pk]))
    assert b"Persons at this company" in page.content and b"Turing" in page.content


def test_user_card_page_saves(admin_client, admin_user):
    card = UserCardFactory(user=admin_user, microsoft_365_email="old@contoso.test")
    response = admin_client.post(
        reverse("admin:exchange_sync_usercard_change", args=[card.pk]),
        {"user": admin_user.pk, "microsoft_365_email": "New@Contoso.test"},
    )
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.microsoft_365_email == "new@contoso.test"
