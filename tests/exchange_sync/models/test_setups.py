"""ContactLink.objects.write_fields: the links' own bulk write, on SQLite and PostgreSQL alike."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange_sync.models import ContactLink
from tests.factories import ContactLinkFactory, ContactSyncSetupFactory

pytestmark = pytest.mark.django_db


def test_write_fields_writes_the_named_fields_of_every_link_in_one_statement():
    setup = ContactSyncSetupFactory()
    links = ContactLinkFactory.create_batch(3, setup=setup)
    for n, link in enumerate(links):
        link.change_key = f"ck-{n + 2}"
        link.bc_synced = {"email": f"new{n}@example.com"}
        link.graph_id = f"not-written-{n}"  # not among the fields named

    with CaptureQueriesContext(connection) as queries:
        ContactLink.objects.write_fields(links, ["change_key", "bc_synced"])

    assert len(queries) == 1
    stored = {link.pk: link for link in ContactLink.objects.filter(setup=setup)}
    assert len(stored) == 3
    for n, link in enumerate(links):
        assert stored[link.pk].change_key == f"ck-{n + 2}"
        assert stored[link.pk].bc_synced == {"email": f"new{n}@example.com"}
        assert stored[link.pk].graph_id.startswith("AAMk-")


def test_write_fields_keeps_each_links_unique_graph_id_when_rewriting_it():
    """The upsert meets the row's own (setup, graph_id) and (setup, contact): they do not refuse it."""
    link = ContactLinkFactory()
    link.pending = True

    ContactLink.objects.write_fields([link], ["graph_id", "pending"])

    link.refresh_from_db()
    assert link.pending is True
    assert ContactLink.objects.count() == 1


def test_write_fields_of_no_links_sends_nothing():
    with CaptureQueriesContext(connection) as queries:
        ContactLink.objects.write_fields([], ["change_key"])
    assert len(queries) == 0
