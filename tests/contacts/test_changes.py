"""Every write path of Contact announces the contacts it wrote, once per committed transaction and
never for one rolled back: save, delete, the admin's delete action, import-export, bulk_create,
bulk_update, QuerySet.update and QuerySet.delete (for which Django sends no post_save)."""

from __future__ import annotations

import pytest
import tablib
from django.db import transaction

from contacts.changes import contacts_changed, written_by
from contacts.models import Contact
from contacts.resources import COLUMNS, ContactResource, caption
from tests.factories import CompanyFactory, PersonFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced():
    """The announcements sent, as (ids, nos, origins) tuples."""
    sent: list[tuple[frozenset, frozenset, frozenset]] = []

    def receiver(*, contact_ids, contact_nos, origins, **kwargs):
        sent.append((contact_ids, contact_nos, origins))

    contacts_changed.connect(receiver, dispatch_uid="test_announced")
    yield sent
    contacts_changed.disconnect(dispatch_uid="test_announced")


@pytest.fixture
def committed(django_capture_on_commit_callbacks, announced):
    """Run a function as if its transaction committed, then forget what it announced: the data a
    test starts from."""

    def run(make):
        with django_capture_on_commit_callbacks(execute=True):
            made = make()
        announced.clear()
        return made

    return run
    contacts_changed.disconnect(dispatch_uid="test_announced")


def test_save_is_announced_after_commit_only(announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        person = PersonFactory()
        assert announced == []  # not before the commit
    assert announced == [(frozenset({person.pk}), frozenset({person.no}), frozenset({None}))]


def test_a_rolled_back_write_announces_nothing(announced, committed, django_capture_on_commit_callbacks):
    person = committed(PersonFactory)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        Contact.objects.filter(pk=person.pk).update(city="Paris")
        person.delete()
        raise RuntimeError("rolled back")
    assert announced == []


def test_many_writes_in_one_transaction_are_one_announcement(
    announced, committed, django_capture_on_commit_callbacks
):
    people = committed(lambda: PersonFactory.create_batch(3))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for person in people:
            person.city = "Paris"
            person.save()
    assert announced == [
        (frozenset(p.pk for p in people), frozenset(p.no for p in people), frozenset({None}))
    ]


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(
            lambda people: Contact.objects.filter(pk__in=[p.pk for p in people]).update(city="Oslo"),
            id="update",
        ),
        pytest.param(lambda people: Contact.objects.bulk_update(people, ["city"]), id="bulk_update"),
        pytest.param(
            lambda people: Contact.objects.filter(pk__in=[p.pk for p in people]).delete(), id="delete"
        ),
        pytest.param(lambda people: [p.delete() for p in people], id="model_delete"),
    ],
)
def test_bulk_and_queryset_writes_are_announced(
    write, announced, committed, django_capture_on_commit_callbacks
):
    people = committed(lambda: PersonFactory.create_batch(2))
    expected_nos = frozenset(p.no for p in people)
    with django_capture_on_commit_callbacks(execute=True):
        write(people)
    assert len(announced) == 1
    assert announced[0][1] == expected_nos


def test_bulk_create_is_announced_with_the_numbers_it_gave(announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = Contact.objects.bulk_create([Contact(first_name="Ada", surname="Byron", email="a@b.test")])
    assert announced[0][1] == frozenset({created[0].no})


def test_an_update_that_moves_rows_out_of_its_filter_announces_them(
    announced, committed, django_capture_on_commit_callbacks
):
    person = committed(lambda: PersonFactory(territory_code="EU"))
    with django_capture_on_commit_callbacks(execute=True):
        Contact.objects.filter(territory_code="EU").update(territory_code="NA")
    assert announced[0][0] == frozenset({person.pk})


def test_a_company_rename_announces_its_persons_too(announced, committed, django_capture_on_commit_callbacks):
    company, person = committed(
        lambda: (company := CompanyFactory(name="Old"), PersonFactory(company=company))
    )
    with django_capture_on_commit_callbacks(execute=True):
        company.name = "New"
        company.save()
    assert frozenset().union(*(ids for ids, _, _ in announced)) == frozenset({company.pk, person.pk})


def test_import_export_is_announced(announced, django_capture_on_commit_callbacks):
    dataset = tablib.Dataset(headers=[caption(name) for name in COLUMNS])
    dataset.append(
        [
            ""
            if name != "first_name" and name != "email"
            else ("Ivy" if name == "first_name" else "ivy@x.test")
            for name in COLUMNS
        ]
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = ContactResource().import_data(dataset, dry_run=False, raise_errors=True)
    assert not result.has_errors()
    assert announced and announced[-1][1] == frozenset({Contact.objects.get(email="ivy@x.test").no})


def test_writes_for_someone_carry_the_origin(announced, committed, django_capture_on_commit_callbacks):
    person = committed(PersonFactory)
    with django_capture_on_commit_callbacks(execute=True), written_by(42), transaction.atomic():
        person.city = "Rome"
        person.save()
    assert announced == [(frozenset({person.pk}), frozenset({person.no}), frozenset({42}))]
