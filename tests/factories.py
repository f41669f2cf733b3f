"""factory-boy factories for the project's models."""

import importlib

import factory
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from contacts.models import Contact, ContactType
from exchange_sync.models import ContactSyncSetup, ExchangeSyncSetup, UserCard

salesperson_migration = importlib.import_module("exchange_sync.migrations.0004_salesperson_group")


def salesperson_group() -> Group:
    """The Salesperson group as its migration makes it. A transactional test's flush empties the
    groups (not the permissions, which post_migrate recreates), so it is made again the same way."""
    group = Group.objects.filter(name=salesperson_migration.SALESPERSON).first()
    return group or salesperson_migration.create_salesperson_group(apps, db="default")


class UserFactory(factory.django.DjangoModelFactory):
    """A salesperson: staff, in the Salesperson group (pass groups=[] for staff without it)."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"salesperson{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@contoso.test")
    is_staff = True
    password = factory.django.Password("pw-for-tests-1")

    @factory.post_generation
    def groups(self, create: bool, groups: list[Group] | None, **kwargs) -> None:
        if create:
            self.groups.set([salesperson_group()] if groups is None else groups)


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
