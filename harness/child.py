"""Child `manage.py` processes of the harness, each pointed at a database and an emulator on purpose."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings


def manage_py(*args: str) -> list[str]:
    """The command line of this checkout's manage.py under this interpreter."""
    return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args]


def child_env(*, var_dir: Path, database_url: str = "", **variables: str) -> dict[str, str]:
    """The environment of a child manage.py that keeps its files in `var_dir` and uses `database_url`,
    by default a scratch SQLite file in `var_dir`. Both are set explicitly, so neither this process's
    environment nor .env can point the child at real data."""
    return {
        **os.environ,
        "BCSYNC_VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url or f"sqlite:///{Path(var_dir) / 'scratch.sqlite3'}",
        **variables,
    }


def emulator_login(*, url: str, tenant: str, client_id: str, client_secret: str) -> dict[str, str]:
    """The settings that point a child's Graph client at the emulator at `url`, signed in as this app."""
    return {
        "M365_EMULATOR_URL": url,
        "M365_TENANT_ID": tenant,
        "M365_CLIENT_ID": client_id,
        "M365_CLIENT_SECRET": client_secret,
    }
