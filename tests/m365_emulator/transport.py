"""Test helper: a requests.Session that sends Microsoft's URLs to the emulator.

It lives with the tests because it needs requests and the emulator is stdlib-only. It rewrites scheme
and host of every request to the emulator's base URL and keeps path and query, as the application's
own adapter does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter


class RewritingAdapter(HTTPAdapter):
    def __init__(self, emulator_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = urlsplit(emulator_url)
        self.scheme, self.netloc = target.scheme, target.netloc

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = urlunsplit((self.scheme, self.netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, *args, **kwargs)


def emulator_session(emulator_url: str) -> requests.Session:
    session = requests.Session()
    adapter = RewritingAdapter(emulator_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
