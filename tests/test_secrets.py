"""The client secret and the access tokens never leave the Graph boundary: not in a page, a log
record (every logger at DEBUG, urllib3 and msal included), a run's error or an activity log entry,
through a validate, a sync, a sync after the tokens expired, and a validate and a sync with a wrong
secret. Pages are fetched over real HTTP from the live server; the runs execute in it (django-q2
in sync mode)."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

import django_q.conf
import pytest
from django.urls import reverse
from django_q.models import Task

from exchange_sync.graph import reset_graph_client_cache
from exchange_sync.models import ActivityLog, ContactSyncSetup, ExchangeSyncSetup, RunStatus, SyncRun
from m365_emulator import EmulatorConfig, serve_in_thread
from tests.factories import PersonFactory, UserCardFactory, UserFactory
from tests.http_client import AdminHttpClient, messages_in

pytestmark = pytest.mark.django_db(transaction=True)


SECRET = "s3cr3t-DO-NOT-LEAK-42"
WRONG_SECRET = "wr0ng-s3cr3t-ALSO-SECRET-77"
MAILBOX = "ann@contoso.test"


@pytest.fixture
def emulator(settings):
    """An emulator that accepts only SECRET, recording every bearer token the app presents."""
    running = serve_in_thread(
        EmulatorConfig(
            tenant="bcsync-test", client_id="bcsync-tests", client_secret=SECRET, mailboxes=[MAILBOX]
        )
    )
    auth = running.emulator.auth
    presented: set[str] = set()
    check_bearer = auth.check_bearer

    def recording_check_bearer(request):
        presented.add(request.header("authorization").partition(" ")[2].strip())
        return check_bearer(request)

    auth.check_bearer = recording_check_bearer
    running.presented_tokens = presented
    settings.M365_EMULATOR_URL = running.url
    settings.M365_TENANT_ID = "bcsync-test"
    settings.M365_CLIENT_ID = "bcsync-tests"
    settings.M365_CLIENT_SECRET = SECRET
    reset_graph_client_cache()
    yield running
    reset_graph_client_cache()
    running.stop()


def issued_tokens(running) -> set[str]:
    auth = running.emulator.auth
    with auth._lock:
        return set(auth._tokens)


@pytest.fixture
def every_log_record(caplog):
    """Every log record at DEBUG, as with LOG_LEVEL=DEBUG: the root logger at DEBUG, so urllib3,
    msal, requests, django_q and exchange_sync log everything; the levels set in settings.LOGGING
    for particular loggers stay (they are part of what is tested)."""
    caplog.set_level(logging.DEBUG)
    return caplog


def rendered(records: list[logging.LogRecord]) -> list[str]:
    """Each record as a handler would write it, traceback included, plus its raw args."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [f"{formatter.format(record)} {record.args!r}" for record in records]


def test_secret_and_tokens_appear_nowhere(live_server, emulator, every_log_record, settings, monkeypatch):
    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)
    ann = UserFactory(username="ann")
    UserCardFactory(user=ann, microsoft_365_email=MAILBOX)
    UserFactory(username="boss", is_superuser=True)
    for n in range(3):
        PersonFactory(email=f"buyer{n}@example.com")
    client = AdminHttpClient(live_server.url).login("ann")
    setup_page = client.get(reverse("admin:exchange_sync_contactsyncsetup_changelist"), follow=True)
    setup = ContactSyncSetup.objects.get(user=ann)
    exchange = ExchangeSyncSetup.objects.get(user=ann)
    assert f"/{setup.pk}/change/" in setup_page.url

    def press(name: str, *args) -> str:
        response = client.post(
            reverse(f"admin:exchange_sync_contactsyncsetup_{name}", args=[setup.pk, *args])
        )
        assert response.status_code == 302, (name, response.status_code)
        return client.get(response.headers["Location"]).text

    # 1. Validate, sync, and sync again after every token expired (Graph's 401, then a new token).
    assert messages_in(press("validate"))[0].startswith("Connected successfully to Microsoft 365")
    press("run", "sync")
    emulator.emulator.configure(expire_tokens_now=True)
    press("run", "full-sync")
    good_runs = list(SyncRun.objects.filter(user=ann).order_by("pk"))
    assert [(run.status, run.created) for run in good_runs] == [
        (RunStatus.SUCCEEDED, 3),
        (RunStatus.SUCCEEDED, 0),
    ]
    client.get(reverse("admin:exchange_sync_activitylog_changelist"))
    client.get(reverse("admin:exchange_sync_exchangesyncsetup_change", args=[exchange.pk]))
    for log in ActivityLog.objects.filter(user=ann):
        client.get(reverse("admin:exchange_sync_activitylog_change", args=[log.pk]))

    # 2. A wrong secret: validate and sync fail, and say which setting to check.
    settings.M365_CLIENT_SECRET = WRONG_SECRET
    reset_graph_client_cache()
    failed_validation = messages_in(press("validate"))[0]
    assert failed_validation.startswith(
        "Cannot connect to Microsoft 365 (sign-in to Microsoft 365): Microsoft 365 rejected the "
        "application&#x27;s credentials (invalid_client): check M365_CLIENT_SECRET"
    )
    press("run", "sync")
    failed_run = SyncRun.objects.filter(user=ann).latest("pk")
    assert failed_run.status == RunStatus.FAILED
    assert "invalid_client" in failed_run.error and "M365_CLIENT_SECRET" in failed_run.error
    client.get(reverse("admin:exchange_sync_syncrun_changelist"))
    client.get(reverse("admin:exchange_sync_exchangesyncsetup_change", args=[exchange.pk]))

    # 3. What a superuser sees, django-q2's task pages included.
    boss = AdminHttpClient(live_server.url).login("boss")
    for path in ["/admin/django_q/success/", "/admin/django_q/failure/", "/admin/exchange_sync/syncrun/"]:
        assert boss.get(path).status_code == 200, path
    tasks = list(Task.objects.all())
    assert len(tasks) == 3
    for task in tasks:
        kind = "success" if task.success else "failure"
        assert boss.get(f"/admin/django_q/{kind}/{task.pk}/change/").status_code == 200

    tokens = issued_tokens(emulator) | emulator.presented_tokens
    assert len(tokens) >= 2  # one before and one after the expiry
    assert emulator.presented_tokens <= issued_tokens(emulator)
    records = rendered(every_log_record.records)
    assert any(r.startswith("urllib3.connectionpool DEBUG") for r in records)  # DEBUG really captured
    assert any(r.startswith("msal.") for r in records)
    texts = {
        "log records": records,
        "pages": client.pages + boss.pages,
        "sync run errors and summaries": [run.error + run.summary for run in SyncRun.objects.all()],
        "activity log": [f"{log.message} {log.details}" for log in ActivityLog.objects.all()],
        "validation messages": list(
            ExchangeSyncSetup.objects.values_list("last_validation_message", flat=True)
        ),
        "django-q2 tasks": [f"{task.result!r} {task.args!r} {task.kwargs!r}" for task in tasks],
    }
    # Nor the CSRF tokens of the pages (Django's template debug log would write them).
    form_tokens = {
        t for page in texts["pages"] for t in re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    }
    assert form_tokens
    for record in records:
        assert not any(token in record for token in form_tokens), record[:300]
    for where, items in texts.items():
        assert items, where
        for text in items:
            for secret in [SECRET, WRONG_SECRET, *tokens]:
                assert secret not in text, f"a secret in {where}: {text[:300]}"
            # Also never a bearer header or a client_secret form field, whatever the value.
            assert not re.search(r"(?i)bearer\s+\S{20,}|client_secret=", text), f"{where}: {text[:300]}"


def test_delegated_tokens_appear_nowhere(live_server, emulator, every_log_record, settings, monkeypatch):
    """Delegated mode: the user's access, refresh and id tokens, through Connect, a sync, a sync
    that refreshes them, a revoked sign-in and a validate, are in no page, log record, run error,
    task or validation message, and the database holds them only encrypted."""
    from cryptography.fernet import Fernet
    from django.db import connection

    from exchange_sync.services import m365_connections
    from m365_emulator.control import sign_in

    monkeypatch.setattr(django_q.conf.Conf, "SYNC", True)
    settings.M365_AUTH_MODE = "delegated"
    settings.TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    callback = reverse("admin:exchange_sync_exchangesyncsetup_m365_callback")
    emulator.emulator.configure(grant="delegated", redirect_uris=[f"http://localhost{callback}"])
    ann = UserFactory(username="ann")
    UserCardFactory(user=ann, microsoft_365_email=MAILBOX)
    PersonFactory(email="buyer@example.com")
    client = AdminHttpClient(live_server.url).login("ann")
    exchange, setup = (
        ExchangeSyncSetup.objects.get_or_create(user=ann)[0],
        ContactSyncSetup.objects.get_or_create(user=ann)[0],
    )
    page = reverse("admin:exchange_sync_exchangesyncsetup_change", args=[exchange.pk])

    started = client.post(reverse("admin:exchange_sync_exchangesyncsetup_m365_connect"))
    answer = urlsplit(sign_in(started.headers["Location"], MAILBOX))
    assert client.get(f"{answer.path}?{answer.query}", follow=True).status_code == 200
    client.get(page)
    cache = json.loads(m365_connections.StoredTokenCache(m365_connections.connection_of(user=ann)).load())

    def press(name: str) -> None:
        response = client.post(reverse(f"admin:exchange_sync_contactsyncsetup_{name}", args=[setup.pk]))
        client.get(response.headers["Location"])

    client.post(reverse("admin:exchange_sync_contactsyncsetup_run", args=[setup.pk, "sync"]), follow=True)
    emulator.emulator.auth.advance_clock(3600)
    client.post(
        reverse("admin:exchange_sync_contactsyncsetup_run", args=[setup.pk, "full-sync"]), follow=True
    )
    refreshed = json.loads(m365_connections.StoredTokenCache(m365_connections.connection_of(user=ann)).load())
    emulator.emulator.auth.revoke_sessions(MAILBOX)
    emulator.emulator.auth.advance_clock(3600)
    press("validate")
    client.get(page)
    client.get(reverse("admin:exchange_sync_syncrun_changelist"))

    runs = list(SyncRun.objects.filter(user=ann).order_by("pk"))
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert "Needs reconnecting" in client.pages[-2]
    tokens = {
        entry["secret"]
        for snapshot in (cache, refreshed)
        for section in ("AccessToken", "RefreshToken", "IdToken")
        for entry in snapshot[section].values()
    } | emulator.presented_tokens
    with emulator.emulator.auth._lock:
        tokens |= set(emulator.emulator.auth._refresh)
    assert len(tokens) >= 5  # two access, two refresh and an id token at least
    with connection.cursor() as cursor:
        cursor.execute("SELECT token_cache FROM exchange_sync_m365connection")
        stored = b"".join(bytes(row[0]) for row in cursor.fetchall())
    texts = {
        "log records": rendered(every_log_record.records),
        "pages": client.pages,
        "sync run errors": [run.error + run.summary for run in runs],
        "validation messages": list(
            ExchangeSyncSetup.objects.values_list("last_validation_message", flat=True)
        ),
        "django-q2 tasks": [f"{task.result!r} {task.args!r} {task.kwargs!r}" for task in Task.objects.all()],
        "connection rows": [
            stored.decode("latin-1"),
            str(list(m365_connections.M365Connection.objects.values())),
        ],
    }
    for where, items in texts.items():
        assert items, where
        for text in items:
            for token in tokens:
                assert token not in text, f"a token in {where}: {text[:300]}"
            assert not re.search(r"(?i)bearer\s+\S{20,}|refresh_token=\S", text), f"{where}: {text[:300]}"
