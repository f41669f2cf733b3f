"""factory-boy factories for the project's models."""

import factory
from django.contrib.auth import get_user_model

from contacts.models import Contact, ContactType
from exchange_sync.models import ContactSyncSetup, ExchangeSyncSetup, UserCard


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"salesperson{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@contoso.test")
    is_staff = True
    password = factory.django.Password("pw-for-tests-1")


class UserCardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserCard

    user = factory.SubFactory(UserFactory)
    microsoft_365_email = factory.LazyAttribute(lambda c: f"{c.user.username}@contoso.test")


class ExchangeSyncSetupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExchangeSyncSetup

    user = factory.SubFactory(UserFactory)


class ContactSyncSetupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactSyncSetup

    user = factory.SubFactory(UserFactory)


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    type = ContactType.COMPANY
    name = factory.Faker("company")
    city = factory.Faker("city")


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    type = ContactType.PERSON
    first_name = factory.Faker("first_name")
    surname = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    job_title = "Buyer"
    city = "London"
    post_code = "N1 9GU"
    phone_no = "+44 20 7946 0000"


def populate_sync_rows(user) -> None:
    """One row of each sync model for `user` (admin smoke tests open every change page)."""
    ExchangeSyncSetupFactory(user=user)
    ContactSyncSetupFactory(user=user)
