"""EmulatorControl: drive a separately started emulator's /_emulator/* endpoints (urllib only).

Mirrors the in-process API: configure, stats, reset_stats, reset, add_mailbox, and outlook(upn) with
the same back-door operations as Emulator.outlook(upn); the sign-in switches of Emulator.auth
(advance_clock, user, user_switch, set_password, add_certificate); and the change-notification
helpers (subscriptions, expire_subscription, fire_lifecycle, notifications, reset_notifications,
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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

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

    # ---- sign-in: the clock, users' refresh-token switches, certificates -------------------------

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self.call("POST", "/clock", {"advance_s": seconds})

    def user(self, upn: str) -> dict[str, Any]:
        return self.call("GET", f"/users/{quote(upn, safe='')}")

    def user_switch(self, upn: str, switch: str) -> dict[str, Any]:
        """switch: revoke-sessions, revoke-consent, require-mfa, require-mfa-registration,
        sign-in-frequency, disable or enable."""
        return self.call("POST", f"/users/{quote(upn, safe='')}/{switch}")

    def set_password(self, upn: str, password: str | None) -> dict[str, Any]:
        return self.call("POST", f"/users/{quote(upn, safe='')}/password", {"password": password})

    def add_certificate(self, pem: str) -> list[dict[str, Any]]:
        return self.call("POST", "/certificates", {"pem": pem})

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


class _Form(HTMLParser):
    """The first form of a sign-in page: its action and inputs (hidden ones with their values)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.error = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name") and values.get("type") in ("hidden", "email", "text"):
            self.fields[values["name"]] = values.get("value", "")
        elif values.get("id") == "error":
            self._in_error = True

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data

    def handle_endtag(self, tag: str) -> None:
        self._in_error = False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class SignInRefused(Exception):
    """The sign-in page showed an error instead of going back to the app (its text is the message)."""


def sign_in(auth_uri: str, upn: str, password: str | None = None, *, consent: bool = True) -> str:
    """Complete the emulator's sign-in pages for `auth_uri` (MSAL's flow["auth_uri"]) as a user would,
    with urllib; returns the URL the browser would be sent back to (the redirect URI with code and
    state, or with error). With response_mode=form_post it returns the form's action and fields as a
    query string. Raises SignInRefused when a page shows an error instead (wrong password, unknown
    account, unregistered redirect URI...)."""
    if not auth_uri.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {auth_uri!r}")
    opener = urllib.request.build_opener(_NoRedirect)
    base = auth_uri.split("/", 3)
    origin = f"{base[0]}//{base[2]}"
    answers = {"account": {"login": upn}, "password": {"passwd": password or ""}}
    request = urllib.request.Request(auth_uri)  # noqa: S310 - the scheme was checked above
    for _ in range(5):
        try:
            with opener.open(request, timeout=30) as response:
                page = response.read().decode("utf-8")
        except urllib.error.HTTPError as answer:
            if answer.code in (301, 302, 303):
                return answer.headers["Location"]
            page = answer.read().decode("utf-8")
        form = _Form()
        form.feed(page)
        if form.action is None or form.error:
            raise SignInRefused(form.error.strip() or "the sign-in page showed no form")
        step = form.fields.get("step")
        if step is None:  # form_post: the page that posts code and state to the app
            return f"{form.action}?{urlencode(form.fields)}"
        fields = {**form.fields, **answers.get(step, {})}
        if step == "consent":
            fields["consent"] = "accept" if consent else "cancel"
        request = urllib.request.Request(  # noqa: S310 - same origin as auth_uri
            origin + form.action, data=urlencode(fields).encode(), method="POST"
        )
    raise SignInRefused("the sign-in pages did not finish")
