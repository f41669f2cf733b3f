"""Job Queue Log Entries on the entry's card and their own read-only page, and a user's back-off on
their Contact Sync Setup page, as the people who may see them see them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from exchange_sync.models import JobQueueEntry, JobQueueLogEntry
from exchange_sync.services import job_queue
from exchange_sync.services.contact_sync import setups_for
from tests.factories import PersonFactory, UserCardFactory, UserFactory, enable_background_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_passes(m365, inline_tasks):
    """ann syncs; carl's mailbox does not exist: the first pass fails him, the second skips him."""
    PersonFactory.create_batch(2)
    ann = UserCardFactory(user=UserFactory(username="ann")).user
    carl = UserCardFactory(user=UserFactory(username="carl")).user
    m365.emulator.add_mailbox(ann.user_card.microsoft_365_email)
    for user in (ann, carl):
        enable_background_sync(user)
    entry = JobQueueEntry.objects.get()
    for _ in range(2):
        JobQueueEntry.objects.filter(pk=entry.pk).update(next_run_at=entry.earliest_start_at)
        job_queue.run_job_queue_entry(entry_id=entry.pk)
    return entry


def test_the_entry_card_lists_its_passes_newest_first_and_each_pass_names_its_users(client, two_passes):
    entry = two_passes
    client.force_login(entry.user)
    card = client.get(reverse("admin:exchange_sync_jobqueueentry_change", args=[entry.pk])).content.decode()
    first, second = JobQueueLogEntry.objects.order_by("started_at", "pk")
    first_link = reverse("admin:exchange_sync_jobqueuelogentry_change", args=[first.pk])
    second_link = reverse("admin:exchange_sync_jobqueuelogentry_change", args=[second.pk])
    assert card.index(second_link) < card.index(first_link)
    assert "Success, some users failed" in card and "1 / 0 / 1 of 2" in card
    assert "1 / 1 / 0 of 2" in card and "carl (Backed off after 1 failed" in card

    page = client.get(first_link).content.decode()
    assert "Contact sync failed for 1 users: carl (sync run #" in page
    assert "<td>ann</td><td>Synced</td>" in page and "<td>carl</td><td>Failed</td>" in page
    assert 'name="_save"' not in page  # read-only
    listing = client.get(
        reverse("admin:exchange_sync_jobqueuelogentry_changelist"), {"entry__id__exact": entry.pk}
    )
    assert listing.status_code == 200 and second_link in listing.content.decode()


def test_a_salesperson_who_does_not_own_the_entry_sees_none_of_its_passes(client, two_passes):
    dora = UserFactory(username="dora")
    client.force_login(dora)
    log = JobQueueLogEntry.objects.first()
    response = client.get(reverse("admin:exchange_sync_jobqueuelogentry_change", args=[log.pk]))
    assert response.status_code == 302  # "doesn't exist", as for any row of another user
    listing = client.get(reverse("admin:exchange_sync_jobqueuelogentry_changelist")).content.decode()
    assert "carl" not in listing


def test_the_setup_page_shows_the_users_back_off_in_one_line(client, two_passes):
    carl = UserFactory._meta.model.objects.get(username="carl")
    _, setup = setups_for(user=carl)
    client.force_login(carl)
    page = client.get(
        reverse("admin:exchange_sync_contactsyncsetup_change", args=[setup.pk])
    ).content.decode()
    assert "Backed off after 1 failed background sync(s): the next pass tries again" in page
    ann = UserFactory._meta.model.objects.get(username="ann")
    client.force_login(ann)
    _, own = setups_for(user=ann)
    page = client.get(reverse("admin:exchange_sync_contactsyncsetup_change", args=[own.pk])).content.decode()
    assert "None: background passes sync this user." in page
