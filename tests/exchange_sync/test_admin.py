"""The Contact Sync Setup page's actions, through the admin as a salesperson uses them."""

import django_q.conf
import pytest
from django.urls import reverse

from exchange_sync.models import ActivityLog, ContactSyncSetup, RunStatus, SyncMode, SyncRun
from exchange_sync.services.contact_sync import setups_for
from tests.factories import PersonFactory, UserCardFactory, UserFactory


@pytest.fixture
def run_tasks_inline(monkeypatch):
    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)


@pytest.fixture
def ann_client(client, sync_user):
    client.force_login(sync_user)
    return client


def setup_url(name, setup, *args):
    return reverse(f"admin:exchange_sync_contactsyncsetup_{name}", args=[setup.pk, *args])


@pytest.mark.django_db(transaction=True)
def test_sync_button_queues_the_run_and_shows_its_page(ann_client, sync_user, run_tasks_inline):
    PersonFactory.create_batch(3)
    _, setup = setups_for(user=sync_user)
    response = ann_client.post(setup_url("run", setup, "sync"))
    run = SyncRun.objects.get(user=sync_user)
    assert response.status_code == 302
    assert response.url == reverse("admin:exchange_sync_syncrun_change", args=[run.pk])
    assert (run.mode, run.status, run.created) == (SyncMode.SYNC, RunStatus.SUCCEEDED, 3)
    page = ann_client.get(response.url)
    assert b"created=3 updated=0" in page.content
    assert b'http-equiv="refresh"' not in page.content  # finished: no more refreshing


@pytest.mark.django_db
def test_run_page_refreshes_itself_while_the_run_is_queued(ann_client, sync_user):
    run = SyncRun.objects.create(user=sync_user, mode=SyncMode.FULL)
    page = ann_client.get(reverse("admin:exchange_sync_syncrun_change", args=[run.pk]))
    assert b'<meta http-equiv="refresh" content="2">' in page.content
    assert b"the page refreshes by itself" in page.content


@pytest.mark.django_db
def test_a_second_press_while_a_run_is_queued_is_refused(ann_client, sync_user):
    _, setup = setups_for(user=sync_user)
    ann_client.post(setup_url("run", setup, "sync"))
    response = ann_client.post(setup_url("run", setup, "full-sync"), follow=True)
    assert SyncRun.objects.filter(user=sync_user).count() == 1
    assert "is already queued" in response.content.decode()


@pytest.mark.django_db
def test_buttons_refuse_get(ann_client, sync_user):
    _, setup = setups_for(user=sync_user)
    assert ann_client.get(setup_url("run", setup, "sync")).status_code == 403
    assert ann_client.get(setup_url("validate", setup)).status_code == 403
    assert not SyncRun.objects.exists()


@pytest.mark.django_db
def test_validate_button_reports_the_connection(ann_client, sync_user):
    _, setup = setups_for(user=sync_user)
    response = ann_client.post(setup_url("validate", setup), follow=True)
    assert "Connected successfully to Microsoft 365: mailbox ann@contoso.test" in response.content.decode()


@pytest.mark.django_db
def test_set_sync_filter_saves_good_input_and_points_at_bad(ann_client, sync_user):
    _, setup = setups_for(user=sync_user)
    bad = ann_client.post(setup_url("filter", setup), {"city": "Lon..*..x", "territory_code": "EU"})
    assert bad.status_code == 200
    assert "a range takes two values" in bad.content.decode()
    setup.refresh_from_db()
    assert setup.contact_filter == {}
    good = ann_client.post(
        setup_url("filter", setup), {"territory_code": "EU|NA", "city": "@lon*"}, follow=True
    )
    setup.refresh_from_db()
    assert setup.contact_filter == {"territory_code": "EU|NA", "city": "@lon*"}
    assert "Sync filter saved: Territory Code: EU|NA; City: @lon*." in good.content.decode()


@pytest.mark.django_db
def test_delete_activity_log_asks_first_then_deletes_only_this_users_entries(ann_client, sync_user):
    _, setup = setups_for(user=sync_user)
    bob = UserFactory(username="bob")
    for user in (sync_user, bob):
        run = SyncRun.objects.create(user=user, mode=SyncMode.SYNC)
        ActivityLog.objects.create(run=run, user=user, action="x", outcome="skipped", message="m")
    confirm = ann_client.get(setup_url("delete_log", setup))
    assert "Delete all 1 activity log entries" in confirm.content.decode()
    assert ActivityLog.objects.count() == 2
    ann_client.post(setup_url("delete_log", setup), {"post": "yes"})
    assert list(ActivityLog.objects.values_list("user__username", flat=True)) == ["bob"]


@pytest.mark.django_db
def test_admin_actions_queue_one_run_per_selected_setup(admin_client, m365):
    users = [UserCardFactory(microsoft_365_email=f"u{n}@contoso.test").user for n in range(3)]
    setups = [setups_for(user=user)[1] for user in users]
    response = admin_client.post(
        reverse("admin:exchange_sync_contactsyncsetup_changelist"),
        {"action": "preview_selected", "_selected_action": [s.pk for s in setups]},
        follow=True,
    )
    assert "Queued 3 run(s)." in response.content.decode()
    assert sorted(SyncRun.objects.values_list("user_id", "mode")) == sorted(
        (u.pk, SyncMode.PREVIEW) for u in users
    )
    assert all(s.active_run_id for s in ContactSyncSetup.objects.all())


@pytest.mark.django_db
def test_a_salesperson_lands_on_their_own_setup(ann_client, sync_user):
    response = ann_client.get(reverse("admin:exchange_sync_contactsyncsetup_changelist"))
    assert response.url == setup_url("change", setups_for(user=sync_user)[1])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expression", "message"),
    [("Lon\x00don", "Null characters are not allowed."), ("EU|\x07NA", "contains the character U+0007")],
)
def test_set_sync_filter_refuses_a_character_no_database_can_store(
    ann_client, sync_user, expression, message
):
    _, setup = setups_for(user=sync_user)

    page = ann_client.post(setup_url("filter", setup), {"city": expression})

    assert page.status_code == 200
    assert message in page.content.decode()
    setup.refresh_from_db()
    assert setup.contact_filter == {}
