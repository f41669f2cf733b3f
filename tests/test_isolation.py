"""Per-user isolation of the admin, over real HTTP: two salespeople, Ann and Bob, each with a User
Card, setups, runs, an activity log and a job queue entry. Bob reaches none of Ann's rows: not in
lists, not by guessing ids, not through the buttons; the buttons want POST and a CSRF token. A
superuser sees both. Requests go through the live server, so middleware and CSRF are production's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import django_q.conf
import pytest
from django.contrib import admin
from django.urls import URLPattern, reverse
from django_q.models import OrmQ, Schedule

from exchange_sync.admin import job_queue as job_queue_pages
from exchange_sync.admin import runs as run_pages
from exchange_sync.admin import setups as setup_pages
from exchange_sync.models import (
    ActivityLog,
    ConnectionStatus,
    ContactSyncSetup,
    Direction,
    ExchangeSyncSetup,
    JobQueueEntry,
    JobStatus,
    Outcome,
    RunStatus,
    SyncMode,
    SyncRun,
    UserCard,
)
from tests.factories import UserCardFactory, UserFactory
from tests.http_client import AdminHttpClient, messages_in

pytestmark = pytest.mark.django_db(transaction=True)

OWNED_MODELS = [UserCard, ExchangeSyncSetup, ContactSyncSetup, SyncRun, ActivityLog, JobQueueEntry]
# Django's own per-object admin URLs; every other named <object_id> URL is a button of ours.
STANDARD_VIEWS = ("change", "delete", "history")


@dataclass
class Owner:
    user: Any
    marker: str  # in every text field of the owner's rows, so a leak shows in any page
    card: UserCard
    exchange: ExchangeSyncSetup
    setup: ContactSyncSetup
    run: SyncRun
    failed_run: SyncRun
    log: ActivityLog
    job: JobQueueEntry

    def rows(self) -> dict[type, list[Any]]:
        return {
            UserCard: [self.card],
            ExchangeSyncSetup: [self.exchange],
            ContactSyncSetup: [self.setup],
            SyncRun: [self.run, self.failed_run],
            ActivityLog: [self.log],
            JobQueueEntry: [self.job],
        }


def make_owner(username: str) -> Owner:
    marker = f"{username.upper()}-PRIVATE"
    user = UserFactory(username=username)
    card = UserCardFactory(user=user, microsoft_365_email=f"{username}-mailbox@contoso.test")
    exchange = ExchangeSyncSetup.objects.create(
        user=user, last_validation_message=f"{marker} validation message"
    )
    setup = ContactSyncSetup.objects.create(
        user=user, folder_name=f"{marker} folder", contact_filter={"territory_code": "EU"}
    )
    job = JobQueueEntry.objects.create(user=user, description=f"{marker} job entry")
    run = SyncRun.objects.create(user=user, mode=SyncMode.SYNC, status=RunStatus.SUCCEEDED, created=3)
    failed_run = SyncRun.objects.create(
        user=user,
        mode=SyncMode.FULL,
        status=RunStatus.FAILED,
        error=f"{marker} run error",
        job_queue_entry=job,
    )
    log = ActivityLog.objects.create(
        run=run,
        user=user,
        contact_no="CT0001",
        email=f"{username}-customer@example.com",
        direction=Direction.TO_M365,
        action="create",
        outcome=Outcome.CREATED,
        message=f"{marker} created the Outlook contact",
    )
    return Owner(user, marker, card, exchange, setup, run, failed_run, log, job)


def snapshot(user) -> dict[str, Any]:
    """Everything of `user` the admin could change, plus the queue (a refused button queues nothing)."""
    state: dict[str, Any] = {
        model.__name__: list(model.objects.filter(user=user).order_by("pk").values())
        for model in OWNED_MODELS
    }
    state["queued_tasks"] = OrmQ.objects.count()
    entries = JobQueueEntry.objects.filter(user=user).values("schedule_id")
    state["schedules"] = list(Schedule.objects.filter(pk__in=entries).order_by("pk").values())
    return state


def assert_no_trace_of(owner: Owner, html: str) -> None:
    assert owner.marker not in html
    assert owner.card.microsoft_365_email not in html
    assert owner.log.email not in html
    assert f">{owner.user.username}<" not in html


@pytest.fixture
def ann() -> Owner:
    return make_owner("ann")


@pytest.fixture
def bob() -> Owner:
    return make_owner("bob")


@pytest.fixture
def as_bob(live_server, ann, bob) -> AdminHttpClient:
    return AdminHttpClient(live_server.url).login("bob")


@pytest.fixture
def as_ann(live_server, ann, bob) -> AdminHttpClient:
    return AdminHttpClient(live_server.url).login("ann")


def admin_url(model, suffix: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{suffix}", args=args)


def button_urls(obj) -> list[str]:
    """Every custom per-object admin URL of obj's model (the buttons), found in get_urls() so a
    button added later is probed too. A <slug:button> takes each known button name."""
    model_admin = admin.site._registry[type(obj)]
    known_buttons = sorted(
        {
            slug
            for pages in (setup_pages, run_pages, job_queue_pages)
            for name, value in vars(pages).items()
            if name.endswith("_BUTTONS") and isinstance(value, dict)
            for slug in value
        }
    )
    urls = []
    for pattern in model_admin.get_urls():
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        converters = getattr(pattern.pattern, "converters", {})
        if "object_id" not in converters or pattern.name.endswith(
            tuple(f"_{view}" for view in STANDARD_VIEWS)
        ):
            continue
        others = [name for name in converters if name != "object_id"]
        assert others in ([], ["button"]), f"teach button_urls about {pattern.name}: {others}"
        for slug in known_buttons if others else [None]:
            kwargs = {"object_id": obj.pk, **({"button": slug} if slug else {})}
            urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))
    return urls


# Everything a button form could send, so a refused button is refused for its owner check alone.
BUTTON_FORM = {
    "allow_mass_delete": "1",
    "post": "yes",
    "enabled": "1",
    "territory_code": "<>EU",
    "city": "Bobville",
}


def assert_refused(client: AdminHttpClient, response, what: str) -> None:
    """Another user's object: the admin answers "doesn't exist" (redirect home) or 403/404."""
    if response.status_code == 302:
        assert response.headers["Location"] == "/admin/", what
        shown = client.messages("/admin/")
        assert len(shown) == 1 and "doesn\u2019t exist. Perhaps it was deleted?" in shown[0], (what, shown)
    else:
        assert response.status_code in (403, 404), (what, response.status_code)


def test_the_buttons_are_all_probed(ann):
    """Guards button_urls: it finds every button of ours (update the list when one is added)."""
    names = {
        re.sub(r"/\d+/", "/<id>/", url)
        for obj in [ann.setup, ann.exchange, ann.job]
        for url in button_urls(obj)
    }
    assert {
        "/admin/exchange_sync/contactsyncsetup/<id>/run/sync/",
        "/admin/exchange_sync/contactsyncsetup/<id>/run/full-sync/",
        "/admin/exchange_sync/contactsyncsetup/<id>/run/preview/",
        "/admin/exchange_sync/contactsyncsetup/<id>/validate/",
        "/admin/exchange_sync/contactsyncsetup/<id>/filter/",
        "/admin/exchange_sync/contactsyncsetup/<id>/delete-log/",
        "/admin/exchange_sync/contactsyncsetup/<id>/background-sync/",
        "/admin/exchange_sync/exchangesyncsetup/<id>/validate/",
        "/admin/exchange_sync/jobqueueentry/<id>/do/run-now/",
        "/admin/exchange_sync/jobqueueentry/<id>/do/on-hold/",
        "/admin/exchange_sync/jobqueueentry/<id>/do/ready/",
    } <= names


# ---- lists ----------------------------------------------------------------------------------------


def test_bobs_lists_show_his_rows_and_none_of_anns(as_bob, ann, bob):
    for model in OWNED_MODELS:
        page = as_bob.get(admin_url(model, "changelist"), follow=True)
        assert page.status_code == 200, model
        assert_no_trace_of(ann, page.text)
    # His own rows are there (the setups' lists open his own setup).
    assert bob.log.message in as_bob.get(admin_url(ActivityLog, "changelist")).text
    assert bob.job.description in as_bob.get(admin_url(JobQueueEntry, "changelist")).text
    runs = as_bob.get(admin_url(SyncRun, "changelist")).text
    assert (
        admin_url(SyncRun, "change", bob.run.pk) in runs
        and admin_url(SyncRun, "change", ann.run.pk) not in runs
    )
    own_card = as_bob.get(admin_url(UserCard, "changelist"))
    assert own_card.headers["Location"] == admin_url(UserCard, "change", bob.card.pk)
    assert bob.card.microsoft_365_email in as_bob.get(own_card.headers["Location"]).text
    own_setup = as_bob.get(admin_url(ContactSyncSetup, "changelist"))
    assert own_setup.status_code == 302
    assert own_setup.headers["Location"] == admin_url(ContactSyncSetup, "change", bob.setup.pk)
    own_exchange = as_bob.get(admin_url(ExchangeSyncSetup, "changelist"))
    assert own_exchange.headers["Location"] == admin_url(ExchangeSyncSetup, "change", bob.exchange.pk)


@pytest.mark.parametrize(
    ("model", "params", "bobs_rows"),
    [
        (ActivityLog, {"run__id__exact": "{ann.run.pk}"}, 0),
        (ActivityLog, {"q": "ann"}, 0),
        (ActivityLog, {"user__id__exact": "{ann.user.pk}"}, 0),
        (SyncRun, {"job_queue_entry__id__exact": "{ann.job.pk}"}, 0),
        (SyncRun, {"user__id__exact": "{ann.user.pk}"}, 0),
        (SyncRun, {"status": "failed"}, 1),
        (JobQueueEntry, {"user__id__exact": "{ann.user.pk}"}, 0),
    ],
    ids=lambda v: getattr(v, "__name__", None) or (next(iter(v)) if isinstance(v, dict) else str(v)),
)
def test_filters_and_search_stay_within_bobs_rows(as_bob, ann, model, params, bobs_rows):
    query = {key: value.format(ann=ann) for key, value in params.items()}
    page = as_bob.get(admin_url(model, "changelist"), **query)
    assert page.status_code == 200
    assert_no_trace_of(ann, page.text)
    paginator = re.search(r'<p class="paginator">(.*?)</p>', page.text, re.S).group(1)
    assert re.sub(r"<[^>]+>|\s+", " ", paginator).split()[0] == str(bobs_rows)


def test_admin_index_and_others_apps_show_bob_nothing_of_ann(as_bob, ann):
    for path in ["/admin/", "/admin/exchange_sync/"]:
        page = as_bob.get(path)
        assert page.status_code == 200
        assert_no_trace_of(ann, page.text)
    # Apps Bob has no permission on are closed to him (the user list would show every mailbox).
    for path in [
        "/admin/auth/user/",
        f"/admin/auth/user/{ann.user.pk}/change/",
        "/admin/django_q/schedule/",
        "/admin/django_q/success/",
        "/admin/django_q/failure/",
    ]:
        assert as_bob.get(path).status_code == 403, path


def test_bob_cannot_add_rows_for_ann(as_bob, ann):
    before = snapshot(ann.user)
    for model in OWNED_MODELS:
        url = admin_url(model, "add")
        assert as_bob.get(url).status_code == 403, url
        posted = as_bob.post(
            url, {"user": str(ann.user.pk), "description": "planted", "object_id_to_run": "6700"}
        )
        assert posted.status_code == 403, url
    assert snapshot(ann.user) == before


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (SyncRun, "job_queue_entry"),
        (SyncRun, "user"),
        (ActivityLog, "run"),
        (ActivityLog, "user"),
        (UserCard, "user"),
        (JobQueueEntry, "user"),
    ],
)
def test_autocomplete_gives_bob_none_of_anns_rows(as_bob, ann, model, field):
    response = as_bob.get(
        "/admin/autocomplete/",
        app_label="exchange_sync",
        model_name=model._meta.model_name,
        field_name=field,
        term="",
    )
    if response.status_code == 200:
        ids = {item["id"] for item in json.loads(response.text)["results"]}
        assert str(ann.job.pk) not in ids and str(ann.run.pk) not in ids and str(ann.user.pk) not in ids
    else:
        assert response.status_code in (403, 404)  # 404: that model's admin has no search
    assert_no_trace_of(ann, response.text)


# ---- guessing ids ---------------------------------------------------------------------------------


def test_bob_cannot_open_change_delete_or_history_of_anns_rows(as_bob, ann):
    before = snapshot(ann.user)
    for model, objects in ann.rows().items():
        for obj in objects:
            for suffix in STANDARD_VIEWS:
                url = admin_url(model, suffix, obj.pk)
                response = as_bob.get(url)
                assert_refused(as_bob, response, f"GET {url}")
                assert_no_trace_of(ann, response.text)
            # The bare /<pk>/ URL redirects to change, which refuses.
            bare = as_bob.get(f"/admin/exchange_sync/{model._meta.model_name}/{obj.pk}/", follow=True)
            assert_no_trace_of(ann, bare.text)
    assert snapshot(ann.user) == before


def test_bob_cannot_change_or_delete_anns_rows_by_posting(as_bob, ann, bob):
    before = snapshot(ann.user)
    for model, objects in ann.rows().items():
        for obj in objects:
            change = admin_url(model, "change", obj.pk)
            response = as_bob.post(
                change,
                {
                    "microsoft_365_email": "bob-took-it@contoso.test",
                    "folder_name": "Bob's now",
                    "out_of_scope_policy": "remove",
                    "description": "hijacked",
                    "user": str(bob.user.pk),
                },
            )
            assert_refused(as_bob, response, f"POST {change}")
            delete = admin_url(model, "delete", obj.pk)
            assert_refused(as_bob, as_bob.post(delete, {"post": "yes"}), f"POST {delete}")
    assert snapshot(ann.user) == before


# ---- buttons and actions --------------------------------------------------------------------------


def test_bob_cannot_press_anns_buttons(as_bob, ann):
    before = snapshot(ann.user)
    urls = [url for obj in [ann.setup, ann.exchange, ann.job] for url in button_urls(obj)]
    for url in urls:
        posted = as_bob.post(url, BUTTON_FORM)
        assert posted.status_code == 403, (url, posted.status_code)
        got = as_bob.get(url)
        assert got.status_code == 403, (url, got.status_code)
        assert_no_trace_of(ann, posted.text + got.text)
    after = snapshot(ann.user)
    assert after == before
    assert SyncRun.objects.filter(user=ann.user).count() == 2
    assert ContactSyncSetup.objects.get(pk=ann.setup.pk).contact_filter == {"territory_code": "EU"}
    assert ActivityLog.objects.filter(user=ann.user).count() == 1


def test_bob_cannot_run_admin_actions_on_anns_rows(as_bob, ann, bob):
    before = snapshot(ann.user)
    for model, objects in ann.rows().items():
        changelist = admin_url(model, "changelist")
        model_admin = admin.site._registry[model]
        for action in model_admin.actions or []:
            name = action if isinstance(action, str) else action.__name__
            response = as_bob.post(
                changelist, {"action": name, "_selected_action": [o.pk for o in objects], "post": "yes"}
            )
            assert response.status_code in (200, 302), (model, name, response.status_code)
            assert_no_trace_of(ann, response.text)
        response = as_bob.post(
            changelist,
            {"action": "delete_selected", "_selected_action": [o.pk for o in objects], "post": "yes"},
        )
        assert_no_trace_of(ann, response.text)
    assert snapshot(ann.user) == before
    assert JobQueueEntry.objects.get(pk=ann.job.pk).status == JobStatus.READY


def test_bob_cannot_give_his_user_card_to_ann_or_take_her_mailbox(as_bob, ann, bob):
    url = admin_url(UserCard, "change", bob.card.pk)
    form = as_bob.get(url).text
    assert bob.card.microsoft_365_email in form
    # The owner and the Microsoft 365 email are read-only for a salesperson: an administrator sets them.
    assert 'name="user"' not in form and 'name="microsoft_365_email"' not in form
    taken = as_bob.post(url, {"user": str(ann.user.pk), "microsoft_365_email": ann.card.microsoft_365_email})
    assert taken.status_code == 403
    moved = as_bob.post(url, {"user": str(ann.user.pk), "microsoft_365_email": "bob-new@contoso.test"})
    assert moved.status_code == 403
    bob.card.refresh_from_db()
    assert (bob.card.user_id, bob.card.microsoft_365_email) == (bob.user.pk, "bob-mailbox@contoso.test")
    assert UserCard.objects.get(user=ann.user).microsoft_365_email == ann.card.microsoft_365_email


# ---- CSRF and GET on Ann's own buttons -------------------------------------------------------------


def test_state_changing_buttons_refuse_missing_csrf_and_get(as_ann, ann):
    before = snapshot(ann.user)
    urls = [url for obj in [ann.setup, ann.exchange, ann.job] for url in button_urls(obj)]
    for url in urls:
        no_token = as_ann.post(url, BUTTON_FORM, csrf=False)
        assert no_token.status_code == 403, url
        assert "CSRF verification failed" in no_token.text
        got = as_ann.get(url)
        if url.endswith(("/filter/", "/delete-log/")):
            assert got.status_code == 200, url  # a form page; submitting it is the POST
        else:
            assert got.status_code == 403, url
    # A made-up token is no token either.
    forged = as_ann.post(
        reverse("admin:exchange_sync_contactsyncsetup_run", args=[ann.setup.pk, "sync"]),
        {"csrfmiddlewaretoken": "x" * 64},
        csrf=False,
    )
    assert forged.status_code == 403
    assert snapshot(ann.user) == before


def test_ann_can_press_her_own_buttons(as_ann, ann, bob, m365, monkeypatch):
    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)
    m365.emulator.add_mailbox(ann.card.microsoft_365_email)
    bob_before = snapshot(bob.user)

    validated = as_ann.post(reverse("admin:exchange_sync_contactsyncsetup_validate", args=[ann.setup.pk]))
    assert validated.headers["Location"] == admin_url(ContactSyncSetup, "change", ann.setup.pk)
    assert as_ann.messages(validated.headers["Location"]) == [
        f"Connected successfully to Microsoft 365: mailbox {ann.card.microsoft_365_email}, "
        f"folder &#x27;{ann.setup.folder_name}&#x27; will be created by the first Sync."
    ]
    assert ExchangeSyncSetup.objects.get(pk=ann.exchange.pk).connection_status == ConnectionStatus.CONNECTED

    filtered = as_ann.post(
        reverse("admin:exchange_sync_contactsyncsetup_filter", args=[ann.setup.pk]), {"city": "London"}
    )
    assert filtered.status_code == 302
    assert as_ann.messages(filtered.headers["Location"]) == ["Sync filter saved: City: London."]
    assert ContactSyncSetup.objects.get(pk=ann.setup.pk).contact_filter == {"city": "London"}

    ran = as_ann.post(reverse("admin:exchange_sync_contactsyncsetup_run", args=[ann.setup.pk, "sync"]))
    new_run = SyncRun.objects.filter(user=ann.user).latest("pk")
    assert ran.headers["Location"] == admin_url(SyncRun, "change", new_run.pk)
    assert (new_run.mode, new_run.status, new_run.error) == (SyncMode.SYNC, RunStatus.SUCCEEDED, "")
    run_page = as_ann.get(ran.headers["Location"]).text
    assert (
        "Sync with Microsoft 365 is queued. This page follows it until it ends." in messages_in(run_page)[0]
    )

    deleted = as_ann.post(
        reverse("admin:exchange_sync_contactsyncsetup_delete_log", args=[ann.setup.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 302
    assert not ActivityLog.objects.filter(user=ann.user).exists()

    held = as_ann.post(reverse("admin:exchange_sync_jobqueueentry_button", args=[ann.job.pk, "on-hold"]))
    assert held.status_code == 302
    assert JobQueueEntry.objects.get(pk=ann.job.pk).status == JobStatus.ON_HOLD

    assert snapshot(bob.user) == bob_before


# ---- superuser ------------------------------------------------------------------------------------


def test_superuser_sees_both(live_server, ann, bob):
    UserFactory(username="boss", is_superuser=True)
    boss = AdminHttpClient(live_server.url).login("boss")
    lists = {
        UserCard: lambda o: o.card.microsoft_365_email,
        ActivityLog: lambda o: o.log.message,
        JobQueueEntry: lambda o: o.job.description,
        ContactSyncSetup: lambda o: o.setup.folder_name,
        SyncRun: lambda o: admin_url(SyncRun, "change", o.failed_run.pk),
        ExchangeSyncSetup: lambda o: admin_url(ExchangeSyncSetup, "change", o.exchange.pk),
    }
    for model, shown in lists.items():
        page = boss.get(admin_url(model, "changelist"))
        assert page.status_code == 200, model
        assert shown(ann) in page.text and shown(bob) in page.text, model
    for owner in (ann, bob):
        for model, objects in owner.rows().items():
            for obj in objects:
                for suffix in ("change", "history"):
                    assert boss.get(admin_url(model, suffix, obj.pk)).status_code == 200, (model, suffix)
        assert owner.marker in boss.get(admin_url(SyncRun, "change", owner.failed_run.pk)).text
