"""Fixtures for the emulator's own tests: a server per test and a Graph client that checks every
contact and folder it receives against the CSDL-derived schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from m365_emulator import EmulatorConfig, RunningEmulator, serve_in_thread
from m365_emulator.schema import validate_contact_shape, validate_folder_shape
from tests.m365_emulator.transport import emulator_session

TENANT = "contoso-test"
CLIENT_ID = "tests-client"
SECRET = "tests-secret"
ADA = "ada@contoso.test"
BOB = "bob@contoso.test"
GRAPH = "https://graph.microsoft.com/v1.0"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def make_config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {
        "tenant": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "mailboxes": [ADA, BOB],
        "fault_seed": 7,
    }
    values.update(overrides)
    return EmulatorConfig(**values)


def shape_problems(path: str, payload: Any) -> list[str]:
    """Schema violations of the contacts/folders in a Graph response body for request path `path`."""
    if not isinstance(payload, dict) or "error" in payload:
        return []
    segments = [segment.lower() for segment in urlsplit(path).path.split("/") if segment]
    if "contacts" in segments:
        check = validate_contact_shape
    elif "contactfolders" in segments or "childfolders" in segments:
        check = validate_folder_shape
    else:
        return []
    items = payload.get("value", [payload])
    return [problem for item in items for problem in check(item)]


class Graph:
    """requests against Microsoft's URLs, rewritten to the emulator, with a bearer token."""

    def __init__(self, server: RunningEmulator) -> None:
        self.server = server
        self.session = emulator_session(server.url)
        self.token = self.fetch_token()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def fetch_token(self, secret: str = SECRET, client_id: str = CLIENT_ID) -> str:
        response = self.session.post(
            f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("https://") else f"{GRAPH}{path}"
        response = self.session.request(method, url, **kwargs)
        if response.content and response.headers.get("Content-Type", "").startswith("application/json"):
            assert shape_problems(url, response.json()) == []
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def batch(self, requests_: list[dict[str, Any]], **kwargs: Any) -> requests.Response:
        response = self.post("/$batch", json={"requests": requests_}, **kwargs)
        if response.status_code == 200:
            urls = {item["id"].lower(): item["url"] for item in requests_}
            for entry in response.json()["responses"]:
                assert shape_problems(urls[entry["id"].lower()], entry.get("body")) == []
        return response

    def folder(self, upn: str = ADA, name: str = "Business Central") -> str:
        response = self.post(f"/users/{upn}/contactFolders", json={"displayName": name})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def create(self, folder_id: str, upn: str = ADA, **data: Any) -> dict[str, Any]:
        response = self.post(
            f"/users/{upn}/contactFolders/{folder_id}/contacts", json=data, headers=IMMUTABLE
        )
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    server = serve_in_thread(make_config())
    yield server
    server.stop()


@pytest.fixture
def graph(emulator: RunningEmulator) -> Graph:
    return Graph(emulator)
