"""The settings `make run` uses for the local Microsoft 365 emulator, written into `.env` so that every
command started in another shell (sync_contacts, validate_connection) reaches the same emulator."""

from __future__ import annotations

import os
import re
from pathlib import Path

# The demo users' addresses. The local emulator makes each one a mailbox as soon as it is used, so a
# User Card saved while `make run` runs needs no restart.
DEMO_MAILBOX_DOMAIN = "bcsync-demo.test"
# The emulator's own defaults (python -m m365_emulator), and the port bin/run-local starts it on.
LOCAL_EMULATOR_SETTINGS = {
    "M365_EMULATOR_URL": "http://127.0.0.1:8365",
    "M365_TENANT_ID": "bcsync-demo",
    "M365_CLIENT_ID": "bcsync-local",
    "M365_CLIENT_SECRET": "local-emulator-secret",
}
# A line as django-environ reads it: optional "export ", NAME=value.
_LINE = re.compile(r"\A(?:export )?([A-Za-z_0-9]+)=(.*)\Z")


def add_local_emulator_settings(*, env_file: Path) -> list[str]:
    """Give each local-emulator setting a value in `env_file` where it has none, and return their names.

    A value already in the file is never changed. A name the file leaves empty (as copied from
    .env.example) is filled in on its own line; a name it lacks is appended. The value written is the
    one exported in this shell, if any, else the local default, so the file agrees with this run."""
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    has_value = set()
    empty_at = {}
    for index, line in enumerate(lines):
        found = _LINE.match(line)
        if found is None:
            continue
        name, value = found.groups()
        if value.strip() not in ("", "''", '""'):
            has_value.add(name)
        else:
            empty_at.setdefault(name, index)
    added = []
    for name, default in LOCAL_EMULATOR_SETTINGS.items():
        if name in has_value:
            continue
        line = f"{name}={os.environ.get(name) or default}"
        if name in empty_at:
            lines[empty_at[name]] = line
        else:
            lines.append(line)
        added.append(name)
    if added:
        env_file.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return added
