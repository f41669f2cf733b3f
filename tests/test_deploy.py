"""The production start as the README's Deploying section describes it: collectstatic, gunicorn with
DEBUG off, a qcluster beside it, and the health URL a load balancer polls; all real processes on
this test's database."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from tests.factories import UserFactory
from tests.http_client import AdminHttpClient
from tests.processes import child_environment, start, stop

DEADLINE_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(answer: Callable[[], requests.Response | None], expected: tuple[int, str], log: Path):
    """Poll until `answer()` gives (status, body) == expected; returns that response."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    seen = None
    while time.monotonic() < deadline:
        response = answer()
        seen = None if response is None else (response.status_code, response.text)
        if seen == expected:
            return response
        time.sleep(0.25)
    raise AssertionError(f"expected {expected}, last answer {seen}\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_the_admin_css_with_debug_off_and_health_follows_the_worker(tmp_path):
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        UserFactory(username="root", is_superuser=True)  # with a hash gunicorn's settings can check
    caches["django_q"].clear()  # heartbeats another test's cluster may have left for 3 seconds
    static_root = tmp_path / "static"
    env = child_environment(tmp_path, DEBUG="false", ALLOWED_HOSTS="127.0.0.1", STATIC_ROOT=str(static_root))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        timeout=DEADLINE_SECONDS,
    )
    bind = f"127.0.0.1:{free_port()}"
    base = f"http://{bind}"
    server_log = tmp_path / "gunicorn.log"
    server = start(["-m", "gunicorn", "bcsync_site.wsgi", "--bind", bind, "--workers", "2"], env, server_log)

    def health() -> requests.Response | None:
        try:
            return requests.get(f"{base}/health/", timeout=10)
        except requests.ConnectionError:
            return None  # still starting

    try:
        wait_for(health, (503, "unavailable"), server_log)  # up, but no worker yet

        login_page = requests.get(f"{base}/admin/login/", timeout=10).text
        css_path = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login_page).group(1)
        css = requests.get(f"{base}{css_path}", headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert css.status_code == 200
        assert css.headers["Content-Type"].startswith("text/css")
        assert css.headers["Content-Encoding"] == "gzip"
        assert "immutable" in css.headers["Cache-Control"]
        assert css.content == (static_root / css_path.removeprefix("/static/")).read_bytes()

        cluster_log = tmp_path / "qcluster.log"
        cluster = start(["manage.py", "qcluster"], env, cluster_log)
        try:
            wait_for(health, (200, "ok"), cluster_log)
            details = AdminHttpClient(base).login("root").get("/health/", format="json")
            assert (details.status_code, details.json()) == (
                200,
                {"Database(alias='default')": "OK", "QueueBroker()": "OK", "QueueWorker()": "OK"},
            )
        finally:
            stop(cluster)
        wait_for(health, (503, "unavailable"), cluster_log)  # a stopped worker is reported at once
    finally:
        stop(server)


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
    )


def test_check_deploy_reports_no_issues_with_production_like_settings(tmp_path):
    result = check_deploy(
        child_environment(
            tmp_path,
            DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(60),
            ALLOWED_HOSTS="bcsync.example.com",
            SECURE_HSTS_SECONDS="31536000",
            SECURE_SSL_REDIRECT="true",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
            SECURE_HSTS_PRELOAD="true",
            BEHIND_TLS_PROXY="true",
        )
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_env_example_as_shipped_works_and_leaves_only_the_tls_warnings(tmp_path):
    lines = (settings.BASE_DIR / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    result = check_deploy(child_environment(tmp_path, **example))

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.findall(r"\(security\.(W\d+)\)", result.stderr) == ["W004", "W008"]  # HSTS, SSL redirect
