"""The per-mailbox Graph budget: a token bucket in the database that every host shares, checked
against the emulator's own request limit (scaled down) with real HTTP, and Retry-After shared too."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from exchange_sync.graph import BucketRates, GraphClient, Throttled, contact_create_request
from exchange_sync.graph.auth import AppCredential, AppRegistration, ClientCredentialsTokenProvider
from exchange_sync.graph.transport import build_session
from exchange_sync.models import MailboxBudget
from exchange_sync.services.mailbox_budget import DatabaseMailboxBudget

MAILBOX = "ann@contoso.test"


def test_the_rates_keep_a_burst_plus_a_full_window_under_the_limit():
    for limit, window_s in [(10_000, 600.0), (12_000, 60.0), (300, 3.0)]:
        rates = BucketRates.for_limit(limit=limit, window_s=window_s)
        assert rates.capacity + rates.rate * window_s == pytest.approx(limit * 0.9)
        assert rates.capacity == pytest.approx(limit * 0.09)
    assert BucketRates.for_limit(limit=10_000, window_s=600.0).rate == pytest.approx(13.5)


def client_for(m365, budget: DatabaseMailboxBudget, **options) -> GraphClient:
    """A client as another host would build it: its own session, token and in-flight slots."""
    registration = AppRegistration(
        tenant_id="bcsync-test",
        client_id="bcsync-tests",
        credential=AppCredential(setting="M365_CLIENT_SECRET", secret="test-secret"),
    )
    provider = ClientCredentialsTokenProvider(
        registration=registration, session=build_session(emulator_url=m365.url)
    )
    return GraphClient(token_provider=provider, session=provider.session, budget=budget, **options)


def scaled_budget(limit: int, window_s: float) -> DatabaseMailboxBudget:
    return DatabaseMailboxBudget(rates=BucketRates.for_limit(limit=limit, window_s=window_s))


@pytest.mark.django_db(transaction=True)
def test_two_hosts_writing_to_one_mailbox_stay_within_its_budget_together(m365):
    """Each thread is a host: its own database connection, client and budget object. Unpaced, the
    400 creates go out in well under a second, far past 300 per 3 s."""
    limit, window_s = 300, 3.0
    m365.emulator.add_mailbox(MAILBOX)
    m365.emulator.configure(rate_limit=limit, rate_window_s=window_s)
    folder_id = m365.emulator.outlook(MAILBOX).create_folder("Business Central")["id"]
    results: dict[str, list] = {}

    def host(name: str) -> None:
        try:
            client = client_for(m365, scaled_budget(limit, window_s))
            requests = [
                contact_create_request(
                    id=str(n), mailbox=MAILBOX, folder_id=folder_id, contact={"givenName": f"{name}{n}"}
                )
                for n in range(200)
            ]
            results[name] = client.batch(mailbox=MAILBOX, requests=requests)
        finally:
            connection.close()

    hosts = [threading.Thread(target=host, args=(name,)) for name in ("a", "b")]
    for thread in hosts:
        thread.start()
    for thread in hosts:
        thread.join()

    stats = m365.emulator.stats()
    assert (stats["throttled"], stats["inner_throttled"]) == (0, 0)
    assert [result.status for name in "ab" for result in results[name]] == [201] * 400
    assert stats["inner_by_mailbox"][MAILBOX] == 400
    assert len(m365.emulator.outlook(MAILBOX).list_contacts("Business Central")) == 400
    assert MailboxBudget.objects.get().tokens < BucketRates.for_limit(limit=limit, window_s=window_s).capacity


@pytest.mark.django_db
def test_after_a_429_the_other_host_waits_out_its_retry_after(m365):
    m365.emulator.add_mailbox(MAILBOX)
    m365.emulator.configure(rate_limit=2, rate_window_s=3.0)
    budget_a, budget_b = scaled_budget(10_000, 600.0), scaled_budget(10_000, 600.0)
    host_a = client_for(m365, budget_a, max_retries=0)
    host_a.check_mailbox(mailbox=MAILBOX)
    host_a.check_mailbox(mailbox=MAILBOX)
    with pytest.raises(Throttled):
        host_a.check_mailbox(mailbox=MAILBOX)  # the window is full: 429 with Retry-After
    assert MailboxBudget.objects.get(mailbox=MAILBOX).blocked_until > budget_a.clock()

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    host_b = client_for(m365, budget_b, sleep=sleep)
    host_b.check_mailbox(mailbox=MAILBOX)
    # Host b never saw a 429 itself: it waited for host a's before sending anything.
    assert len(waits) == 1 and waits[0] > 1
    assert m365.emulator.stats()["throttled"] == 1
