"""factory-boy factories for the project's models."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from contacts.models import Contact, ContactType
from exchange_sync.models import ContactSyncSetup, ExchangeSyncSetup, RunStatus, SyncMode, SyncRun, UserCard


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


class SyncRunFactory(factory.django.DjangoModelFactory):
    """A finished run, for pages that show runs (the sync's own tests run real ones)."""

    class Meta:
        model = SyncRun

    user = factory.SubFactory(UserFactory)
    mode = SyncMode.SYNC
    status = RunStatus.SUCCEEDED
    queued_at = factory.LazyFunction(timezone.now)
    started_at = factory.LazyAttribute(lambda run: run.queued_at)
    finished_at = factory.LazyAttribute(lambda run: run.started_at + timedelta(seconds=5))
