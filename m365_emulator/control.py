"""EmulatorControl: drive a separately started emulator's /_emulator/* endpoints (urllib only).

Mirrors the in-process API: configure, stats, reset_stats, reset, add_mailbox, outlook(upn) with
the same back-door operations as Emulator.outlook(upn), and the change-notification helpers
(subscriptions, expire_subscription, fire_lifecycle, notifications, reset_notifications,
wait_notifications, endpoints). Errors raise GraphError.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import GraphError


class EmulatorControl:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        # The scheme was checked in __init__, so urllib only ever opens http(s) here.
        request = urllib.request.Request(  # noqa: S310
            f"{self.base_url}/_emulator{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as failure:
            payload = json.loads(failure.read() or b"{}").get("error", {})
            raise GraphError(
                failure.code, payload.get("code", "Unknown"), payload.get("message", "")
            ) from None
        return json.loads(raw) if raw else None

    def configure(self, **knobs: Any) -> dict[str, Any]:
        return self.call("POST", "/config", knobs)

    def config(self) -> dict[str, Any]:
        return self.call("GET", "/config")

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/stats")

    def reset_stats(self) -> None:
        self.call("POST", "/stats/reset")

    def reset(self) -> None:
        self.call("POST", "/reset")

    def add_mailbox(self, upn: str, rest_enabled: bool = True) -> None:
        self.call("POST", "/mailboxes", {"upn": upn, "rest_enabled": rest_enabled})

    def mailboxes(self) -> list[dict[str, Any]]:
        return self.call("GET", "/mailboxes")

    def outlook(self, upn: str) -> RemoteOutlook:
        return RemoteOutlook(self, upn)

    def subscriptions(self) -> list[dict[str, Any]]:
        return self.call("GET", "/subscriptions")

    def expire_subscription(self, subscription_id: str) -> None:
        self.call("POST", f"/subscriptions/{quote(subscription_id, safe='')}/expire")

    def fire_lifecycle(self, subscription_id: str, event: str) -> dict[str, Any] | None:
        result = self.call(
            "POST", f"/subscriptions/{quote(subscription_id, safe='')}/lifecycle", {"event": event}
        )
        return result["item"]

    def notifications(self) -> list[dict[str, Any]]:
        return self.call("GET", "/notifications")

    def reset_notifications(self) -> None:
        self.call("POST", "/notifications/reset")

    def wait_notifications(self, timeout_s: float = 10.0) -> bool:
        return self.call("POST", "/notifications/wait", {"timeout_s": timeout_s})["idle"]

    def endpoints(self) -> dict[str, dict[str, Any]]:
        return self.call("GET", "/endpoints")


class RemoteOutlook:
    """The Outlook back door of a remote emulator; same methods as m365_emulator.outlook.Outlook."""

    def __init__(self, control: EmulatorControl, upn: str) -> None:
        self.control = control
        self.prefix = f"/mailboxes/{quote(upn, safe='')}"

    def list_folders(self) -> list[dict[str, Any]]:
        return self.control.call("GET", f"{self.prefix}/folders")

    def create_folder(self, display_name: str, parent: str | None = None) -> dict[str, Any]:
        return self.control.call(
            "POST", f"{self.prefix}/folders", {"displayName": display_name, "parent": parent}
        )

    def list_contacts(self, folder: str, limit: int | None = None) -> list[dict[str, Any]]:
        contacts = self.control.call("GET", f"{self.prefix}/folders/{quote(folder, safe='')}/contacts")
        return contacts[:limit] if limit is not None else contacts

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self.control.call("GET", f"{self.prefix}/contacts/{quote(contact_id, safe='')}")

    def create_contact(self, folder: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.control.call("POST", f"{self.prefix}/folders/{quote(folder, safe='')}/contacts", data)

    def update_contact(self, contact_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.control.call("PATCH", f"{self.prefix}/contacts/{quote(contact_id, safe='')}", data)

    def move_contact(self, contact_id: str, folder: str) -> dict[str, Any]:
        return self.control.call(
            "POST", f"{self.prefix}/contacts/{quote(contact_id, safe='')}/move", {"folder": folder}
        )

    def delete_contact(self, contact_id: str) -> None:
        self.control.call("DELETE", f"{self.prefix}/contacts/{quote(contact_id, safe='')}")


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """`python -m m365_emulator --port 0 ARGS` as a child process (benchmarks and soaks measure it
    apart from the app); yields its base URL and stops it on exit."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter and this package
        [sys.executable, "-m", "m365_emulator", "--port", "0", *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.search(r"listening on (http://\S+)", banner)
        if found is None:
            raise RuntimeError(f"The emulator did not start (exit status {process.wait()}): {banner!r}")
        yield found.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
