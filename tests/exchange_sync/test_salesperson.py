"""The Salesperson group and the Microsoft 365 email, over real HTTP as the people concerned: a
member works with the contact master and their own sync; staff outside the group get neither; only
an administrator with the permission decides which mailbox a user syncs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.forms.models import model_to_dict

from contacts.admin import ContactAdmin
from contacts.models import Contact
from exchange_sync.models import ContactSyncSetup, SyncMode, SyncRun, UserCard
from tests.factories import PersonFactory, UserCardFactory, UserFactory, salesperson_group
from tests.http_client import AdminHttpClient

pytestmark = pytest.mark.django_db(transaction=True)

CHECKOUT = Path(__file__).resolve().parents[2]


def contact_form(contact: Contact, **changes) -> dict[str, str]:
    """The Contact change form as the browser posts it, with `changes` applied."""
    fields = [
        name
        for _, options in ContactAdmin.fieldsets
        for entry in options["fields"]
        for name in (entry if isinstance(entry, tuple) else (entry,))
        if name not in ContactAdmin.readonly_fields
    ]
    values = {**model_to_dict(contact, fields=fields), **changes}
    return {
        name: "on" if value is True else str(value)
        for name, value in values.items()
        if value not in (None, False)
    }


def test_the_group_holds_exactly_what_a_salespersons_pages_need():
    permissions = {
        f"{app_label}.{codename}"
        for app_label, codename in salesperson_group().permissions.values_list(
            "content_type__app_label", "codename"
        )
    }
    assert permissions == {
        "contacts.view_contact",
        "contacts.change_contact",
        "exchange_sync.run_contact_sync",
    }


def test_a_member_edits_the_contact_master_and_sees_exactly_their_own_sync(live_server):
    sally = UserFactory(username="sally")
    UserCardFactory(user=sally)
    colleague = UserFactory(username="colin")
    theirs = SyncRun.objects.create(user=colleague, mode=SyncMode.SYNC)
    mine = SyncRun.objects.create(user=sally, mode=SyncMode.SYNC)
    contact = PersonFactory(job_title="Buyer")
    client = AdminHttpClient(live_server.url).login("sally")

    assert client.get("/admin/contacts/contact/").status_code == 200
    url = f"/admin/contacts/contact/{contact.pk}/change/"
    assert client.get(url).status_code == 200
    saved = client.post(url, contact_form(contact, job_title="Head Buyer"))
    assert saved.status_code == 302, saved.text[:2000]
    contact.refresh_from_db()
    assert contact.job_title == "Head Buyer"

    own_setup = client.get("/admin/exchange_sync/contactsyncsetup/")
    assert own_setup.headers["Location"] == (
        f"/admin/exchange_sync/contactsyncsetup/{ContactSyncSetup.objects.get(user=sally).pk}/change/"
    )
    runs = client.get("/admin/exchange_sync/syncrun/").text
    assert f"/syncrun/{mine.pk}/change/" in runs and f"/syncrun/{theirs.pk}/change/" not in runs
    assert client.get("/admin/exchange_sync/activitylog/").status_code == 200
    # Nothing else: not the users, not the contact master's settings, not another's run.
    for path in ["/admin/auth/user/", "/admin/auth/group/", "/admin/contacts/numberseries/"]:
        assert client.get(path).status_code == 403, path
    assert client.get("/admin/contacts/contact/add/").status_code == 403
    assert client.get(f"/admin/exchange_sync/syncrun/{theirs.pk}/change/").status_code == 302


def test_staff_outside_the_group_get_neither_contacts_nor_sync_pages(live_server):
    UserFactory(username="temp", groups=[])
    client = AdminHttpClient(live_server.url).login("temp")
    for path in [
        "/admin/contacts/contact/",
        "/admin/exchange_sync/contactsyncsetup/",
        "/admin/exchange_sync/",
    ]:
        assert client.get(path).status_code in (403, 404), path
    index = client.get("/admin/").text
    assert "/admin/exchange_sync/" not in index and "/admin/contacts/" not in index


def test_a_salesperson_cannot_point_their_card_at_another_mailbox(live_server):
    sally = UserFactory(username="sally")
    card = UserCardFactory(user=sally, microsoft_365_email="sally@bcsync-demo.test")
    client = AdminHttpClient(live_server.url).login("sally")
    url = f"/admin/exchange_sync/usercard/{card.pk}/change/"
    page = client.get(url).text
    assert "sally@bcsync-demo.test" in page and 'name="microsoft_365_email"' not in page
    assert client.post(url, {"microsoft_365_email": "ceo@bcsync-demo.test"}).status_code == 403
    card.refresh_from_db()
    assert card.microsoft_365_email == "sally@bcsync-demo.test"


def user_page_form(user, email: str) -> dict[str, str]:
    card = UserCard.objects.filter(user=user).first()
    return {
        "username": user.username,
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2026-11-01",
        "date_joined_1": "09:00:00",
        "user_card-TOTAL_FORMS": "1",
        "user_card-INITIAL_FORMS": "1" if card else "0",
        "user_card-MIN_NUM_FORMS": "0",
        "user_card-MAX_NUM_FORMS": "1",
        "user_card-0-id": str(card.pk) if card else "",
        "user_card-0-user": str(user.pk),
        "user_card-0-microsoft_365_email": email,
    }


def test_on_the_user_page_the_email_takes_the_permission_not_the_user_admin(live_server):
    """A user administrator without the permission sees the email read-only; given the
    permission, they set it."""
    sally = UserFactory(username="sally")
    UserCardFactory(user=sally, microsoft_365_email="sally@bcsync-demo.test")
    helpdesk = UserFactory(username="helpdesk", groups=[])
    helpdesk.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["auth", "exchange_sync"],
            codename__in=["view_user", "change_user", "view_usercard"],
        )
    )
    client = AdminHttpClient(live_server.url).login("helpdesk")
    url = f"/admin/auth/user/{sally.pk}/change/"
    page = client.get(url).text
    assert "sally@bcsync-demo.test" in page and 'name="user_card-0-microsoft_365_email"' not in page
    assert client.post(url, user_page_form(sally, "ceo@bcsync-demo.test")).status_code == 302
    assert UserCard.objects.get(user=sally).microsoft_365_email == "sally@bcsync-demo.test"

    helpdesk.user_permissions.add(Permission.objects.get(codename="change_microsoft_365_email"))
    assert 'name="user_card-0-microsoft_365_email"' in client.get(url).text
    assert client.post(url, user_page_form(sally, "sally.new@bcsync-demo.test")).status_code == 302
    assert UserCard.objects.get(user=sally).microsoft_365_email == "sally.new@bcsync-demo.test"


# The group as `migrate` leaves it, on a scratch SQLite database in a child process.
MIGRATE_AND_REPORT = """
import json
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from exchange_sync.models import UserCard
if {existing}:
    call_command("migrate", "contacts", verbosity=0)
    call_command("migrate", "auth", verbosity=0)
    call_command("migrate", "exchange_sync", "0003", verbosity=0)
    sally = User.objects.create_user("sally", is_staff=True)
    UserCard.objects.create(user=sally, microsoft_365_email="sally@contoso.test")
    User.objects.create_user("temp", is_staff=True)
call_command("migrate", verbosity=0)
group = Group.objects.get(name="Salesperson")
print(json.dumps({{
    "permissions": sorted(group.permissions.values_list("codename", flat=True)),
    "members": sorted(group.user_set.values_list("username", flat=True)),
}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["fresh database", "existing database"])
def test_migrate_creates_the_group_on_a_fresh_and_on_an_existing_database(tmp_path, existing):
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("M365_")},
        "BCSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'scratch.sqlite3'}",
    }
    child = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", MIGRATE_AND_REPORT.format(existing=existing)],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["permissions"] == ["change_contact", "run_contact_sync", "view_contact"]
    # Staff who already synced (an email on their card) keep their pages; other staff are not added.
    assert report["members"] == (["sally"] if existing else [])
