"""Linked contacts seeded in bulk, as a Full Sync would have left them, without a Graph request: the
persons through bulk_create, their Outlook copies through the emulator's Python API (in process), and
the links with both sides' records. The quiet-sync benchmark and tests need folders of 100,000."""

from __future__ import annotations

from typing import Any

from contacts.models import Contact, ContactType
from exchange_sync.models import ContactLink, ContactSyncSetup
from exchange_sync.sync.mapping import Countries, bc_record, graph_body, outlook_contact, record_hash
from exchange_sync.sync.reader import load_countries
from m365_emulator.outlook import Outlook

SEED_CHUNK = 5000


def seed_linked(
    *, setup: ContactSyncSetup, outlook: Outlook, mailbox: str, n: int, start: int = 0, **fields: Any
) -> None:
    """N persons (numbered from `start`, with `fields` on each), each linked to its copy in the setup's
    folder, which is created in Outlook when the setup has none yet."""
    if not setup.folder_id:
        folder = outlook.create_folder(setup.folder_name)
        ContactSyncSetup.objects.filter(pk=setup.pk).update(folder_id=folder["id"], folder_mailbox=mailbox)
        setup.folder_id, setup.folder_mailbox = folder["id"], mailbox
    countries = load_countries()
    for first in range(start, start + n, SEED_CHUNK):
        persons = Contact.objects.bulk_create(
            [_person(i, **fields) for i in range(first, min(start + n, first + SEED_CHUNK))]
        )
        ContactLink.objects.bulk_create(
            [_link(setup=setup, outlook=outlook, contact=c, countries=countries) for c in persons]
        )


def _person(i: int, **fields: Any) -> Contact:
    values = {
        "type": ContactType.PERSON,
        "first_name": f"First{i}",
        "surname": f"Surname{i}",
        "email": f"person{i}@seed.test",
        "job_title": "Buyer",
        "city": "Leeds",
        "phone_no": f"+44 113 {i:07d}",
        **fields,
    }
    return Contact(**values)


def _link(
    *, setup: ContactSyncSetup, outlook: Outlook, contact: Contact, countries: Countries
) -> ContactLink:
    record = bc_record(contact)
    item = outlook.create_contact(setup.folder_id, graph_body(record))
    # What Graph answers a create with: no extended properties without $expand (the back door shows all).
    item.pop("singleValueExtendedProperties", None)
    written = outlook_contact(item, countries)
    return ContactLink(
        setup=setup,
        contact=contact,
        contact_no=contact.no,
        email=contact.search_email,
        graph_id=written.graph_id,
        change_key=written.change_key,
        bc_hash=record_hash(record),
        m365_hash=record_hash(written.record),
        bc_synced=record,
        m365_synced=written.record,
    )
