"""An import is a Business Central change like any other: the next Sync sends it to Outlook."""

import pytest

from contacts.models import Contact
from exchange_sync.models import RunStatus, SyncMode
from exchange_sync.services import contact_sync
from tests.contacts.test_import_export import confirm, csv_file, dry_run
from tests.factories import PersonFactory
from tests.http_client import csrf_client

pytestmark = pytest.mark.django_db

FOLDER = "Business Central"


def sync(user):
    run = contact_sync.request_contact_sync(user=user, mode=SyncMode.SYNC, enqueue=False)
    run = contact_sync.run_contact_sync(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def test_an_imported_change_and_an_imported_contact_reach_outlook_on_the_next_sync(
    sync_user, m365, admin_user
):
    ada = PersonFactory(first_name="Ada", surname="Lovelace", email="ada@example.com", job_title="Buyer")
    assert sync(sync_user).created == 1
    admin = csrf_client(admin_user)
    content = csv_file(
        [
            {
                "no": ada.no,
                "first_name": "Ada",
                "surname": "Lovelace",
                "email": "ada@example.com",
                "job_title": "Head of Buying",
                "city": ada.city,
                "post_code": ada.post_code,
                "phone_no": ada.phone_no,
            },
            {"first_name": "Grace", "surname": "Hopper", "email": "grace@example.com"},
        ]
    )
    assert confirm(admin, dry_run(admin, content)).status_code == 302
    assert Contact.objects.get(pk=ada.pk).job_title == "Head of Buying"

    run = sync(sync_user)
    assert (run.created, run.moved()) == (1, {"created": 1, "updated": 1})
    outlook = {
        item["emailAddresses"][0]["address"]: item
        for item in m365.emulator.outlook("ann@contoso.test").list_contacts(FOLDER)
    }
    assert outlook["ada@example.com"]["jobTitle"] == "Head of Buying"
    assert outlook["grace@example.com"]["displayName"] == "Grace Hopper"
