"""Who learns what from the health endpoint. The checks run for real: the test database, django-q2's
ORM broker on it, and its heartbeat cache, where no cluster has reported (a running qcluster is in
tests/test_deploy.py)."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HEALTH = "/health/"


@pytest.fixture(autouse=True)
def no_worker_seen(db):
    caches["django_q"].clear()  # heartbeats another test's cluster may have left for 3 seconds


def test_without_a_worker_anyone_gets_503_and_one_word(client):
    response = client.get(HEALTH)

    assert (response.status_code, response.content) == (503, b"unavailable")
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"].startswith("max-age=0, no-cache")


def test_a_signed_in_salesperson_learns_no_more_than_the_load_balancer(client, staff_user):
    client.force_login(staff_user)

    for accept in ("application/json", "text/html", "text/plain"):
        response = client.get(HEALTH, headers={"Accept": accept})
        assert (response.status_code, response.content) == (503, b"unavailable"), accept
    assert client.get(HEALTH, {"format": "json"}).content == b"unavailable"


def test_a_superuser_sees_which_check_failed_and_why(client):
    client.force_login(UserFactory(username="root", is_superuser=True))

    response = client.get(HEALTH, headers={"Accept": "application/json"})

    assert response.status_code == 503
    assert response.json() == {
        "Database(alias='default')": "OK",
        "QueueBroker()": "OK",
        "QueueWorker()": "Unavailable: no django-q2 cluster reported in the last 3 seconds",
    }


def test_a_broker_that_does_not_answer_fails_the_broker_check(client):
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE django_q_ormq")  # the ORM broker's queue; the test's rollback restores it
    client.force_login(UserFactory(username="root", is_superuser=True))

    response = client.get(HEALTH, headers={"Accept": "application/json"})

    assert response.status_code == 503
    assert response.json()["QueueBroker()"].startswith("Unavailable: the task broker did not answer (")


def test_it_stays_open_when_every_other_page_requires_sign_in(client, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]

    assert client.get("/")["Location"] == "/admin/login/?next=/"  # the middleware is on
    assert (client.get(HEALTH).status_code, client.get(HEALTH).content) == (503, b"unavailable")


def test_the_ssl_redirect_spares_it_for_probes_over_plain_http(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/admin/login/").status_code == 301
    assert client.get(HEALTH).status_code == 503
