"""factory-boy factories for the project's models."""

import importlib
from datetime import timedelta

import factory
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from contacts.models import Contact, ContactType
from exchange_sync.models import (
    ContactLink,
    ContactSyncSetup,
    ExchangeSyncSetup,
    RunStatus,
    SyncMode,
    SyncRun,
    UserCard,
)

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


class ContactLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactLink

    setup = factory.SubFactory(ContactSyncSetupFactory)
    contact = factory.SubFactory(PersonFactory)
    contact_no = factory.LazyAttribute(lambda link: link.contact.no)
    email = factory.LazyAttribute(lambda link: link.contact.search_email)
    graph_id = factory.Sequence(lambda n: f"AAMk-{n}")
    change_key = "ck-1"


def populate_sync_rows(user) -> None:
    """One row of each sync model for `user` (admin smoke tests open every change page)."""
    from exchange_sync.models import JobQueueLogEntry, PassOutcome, PassUser
    from exchange_sync.services import job_queue

    ExchangeSyncSetupFactory(user=user)
    ContactSyncSetupFactory(user=user)
    log = JobQueueLogEntry.objects.create(entry=job_queue.ensure_contact_sync_entry(user=user), users_total=1)
    PassUser.objects.create(log_entry=log, user=user, outcome=PassOutcome.SYNCED, detail="sync run #1")


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


def enable_background_sync(user) -> None:
    """Background synchronization on, as it was switched on while the connection worked (the
    mailbox may have gone since), with its Job Queue Entry for Codeunit 6700."""
    from exchange_sync.services import job_queue

    ExchangeSyncSetup.objects.update_or_create(user=user, defaults={"enabled": True})
    job_queue.ensure_contact_sync_entry(user=user)


def job_queue_schedules():
    """The django-q2 Schedules that Job Queue Entries own; migrate also creates the daily
    prune-sync-log Schedule, which is not one of them."""
    from django_q.models import Schedule

    return Schedule.objects.filter(name__startswith="job-queue-entry-")
