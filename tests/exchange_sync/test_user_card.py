import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from exchange_sync.models import UserCard
from tests.factories import UserCardFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_microsoft_365_email_is_stored_normalised():
    card = UserCardFactory(microsoft_365_email="  Ann@Contoso.TEST ")
    card.refresh_from_db()
    assert card.microsoft_365_email == "ann@contoso.test"


def test_microsoft_365_email_is_unique_regardless_of_case():
    UserCardFactory(microsoft_365_email="ann@contoso.test")
    duplicate = UserCard(user=UserFactory(), microsoft_365_email="ANN@contoso.test")
    with pytest.raises(ValidationError) as info:
        duplicate.full_clean()
    assert "Another user already has this Microsoft 365 email." in str(info.value)


def test_several_users_may_leave_it_blank():
    UserCardFactory(microsoft_365_email="")
    UserCardFactory(microsoft_365_email="")
    assert UserCard.objects.filter(microsoft_365_email="").count() == 2


def test_microsoft_365_email_must_be_an_address():
    card = UserCard(user=UserFactory(), microsoft_365_email="not an address")
    with pytest.raises(ValidationError) as info:
        card.full_clean()
    assert "microsoft_365_email" in info.value.message_dict


def test_user_admin_edits_the_microsoft_365_section(admin_client):
    user = UserFactory(username="carol")
    url = reverse("admin:auth_user_change", args=[user.pk])
    page = admin_client.get(url)
    assert b"Microsoft 365" in page.content
    form = {
        "username": "carol",
        "email": "carol@contoso.test",
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2026-11-01",
        "date_joined_1": "09:00:00",
        "user_card-TOTAL_FORMS": "1",
        "user_card-INITIAL_FORMS": "0",
        "user_card-MIN_NUM_FORMS": "0",
        "user_card-MAX_NUM_FORMS": "1",
        "user_card-0-microsoft_365_email": "Carol@Contoso.test",
        "user_card-0-user": str(user.pk),
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert UserCard.objects.get(user=user).microsoft_365_email == "carol@contoso.test"


def test_user_admin_refuses_a_taken_microsoft_365_email(admin_client):
    UserCardFactory(microsoft_365_email="taken@contoso.test")
    user = UserFactory(username="dave")
    url = reverse("admin:auth_user_change", args=[user.pk])
    form = {
        "username": "dave",
        "is_active": "on",
        "date_joined_0": "2026-11-01",
        "date_joined_1": "09:00:00",
        "user_card-TOTAL_FORMS": "1",
        "user_card-INITIAL_FORMS": "0",
        "user_card-MIN_NUM_FORMS": "0",
        "user_card-MAX_NUM_FORMS": "1",
        "user_card-0-microsoft_365_email": "TAKEN@contoso.test",
        "user_card-0-user": str(user.pk),
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert b"Another user already has this Microsoft 365 email." in response.content


def test_a_salesperson_opens_their_own_user_card_read_only(client, staff_user):
    client.force_login(staff_user)
    response = client.get(reverse("admin:exchange_sync_usercard_changelist"))
    card = UserCard.objects.get(user=staff_user)
    assert response.status_code == 302
    assert response.url == reverse("admin:exchange_sync_usercard_change", args=[card.pk])
    saved = client.post(response.url, {"microsoft_365_email": "Ann@Contoso.test"})
    assert saved.status_code == 403  # the Microsoft 365 email is an administrator's to set
    card.refresh_from_db()
    assert (card.user, card.microsoft_365_email) == (staff_user, "")
