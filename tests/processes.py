"""Real child processes for tests (qcluster workers, gunicorn, racing scripts) on this test's
database. Rows must be committed for the children to see them: such tests use transaction=True."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def child_environment(var_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of a child process: this test's database, its own var/ directory and this
    process's SECRET_KEY (django-q2 signs its task packages with it, as on several hosts). Without
    DJANGO_ALLOW_ASYNC_UNSAFE, which the browser tests set for this process only."""
    return {
        **{name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DJANGO_SETTINGS_MODULE": "bcsync_site.settings",
        "DATABASE_URL": test_database_url(),
        "BCSYNC_VAR_DIR": str(var_dir),
        "SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(settings.BASE_DIR),
        **variables,
    }


def emulator_child_environment(var_dir: Path, emulator_url: str, **variables: str) -> dict[str, str]:
    """`child_environment` for a process that signs in to this test's emulator with its credentials."""
    return child_environment(
        var_dir,
        M365_EMULATOR_URL=emulator_url,
        M365_TENANT_ID=settings.M365_TENANT_ID,
        M365_CLIENT_ID=settings.M365_CLIENT_ID,
        M365_CLIENT_SECRET=settings.M365_CLIENT_SECRET,
        **variables,
    )


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its workers too
    )


def stop(*processes: subprocess.Popen) -> None:
    """SIGTERM to each process group, then SIGKILL whatever is left after a few seconds (a cluster's
    graceful stop can take 20 s; the results are in the database by now)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the process or any worker it left behind
        process.wait(timeout=10)
