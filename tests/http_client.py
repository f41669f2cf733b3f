"""A logged-in admin user over real HTTP (pytest-django's live_server), with CSRF as a browser does
it; and Django's test client with CSRF enforced, for pages that need no live server."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import requests
from django.test import Client
from django.urls import reverse

LOGIN_PATH = "/admin/login/"
PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory's password


class AdminHttpClient:
    """requests.Session against the live server. Responses are not followed unless asked, so tests
    see each redirect. `post` sends the CSRF token from the cookie, as the admin's forms do."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.pages: list[str] = []  # every HTML/JSON body fetched, for leak checks

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path)

    def login(self, username: str, password: str = PASSWORD) -> AdminHttpClient:
        self.get(LOGIN_PATH)
        response = self.post(LOGIN_PATH, {"username": username, "password": password, "next": "/admin/"})
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
        assert response.headers["Location"] == "/admin/"
        return self

    @property
    def csrf_token(self) -> str:
        return self.session.cookies.get("csrftoken", "")

    def _keep(self, response: requests.Response) -> requests.Response:
        self.pages.append(response.text)
        return response

    def _cookie_header(self) -> dict[str, str]:
        # Production settings mark the session and CSRF cookies Secure; the live server is plain
        # HTTP on localhost, which browsers treat as a secure context and send them to. requests
        # would not, so send them ourselves instead of weakening the settings under test.
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.session.cookies)
        return {"Cookie": cookies} if cookies else {}

    def get(self, path: str, *, follow: bool = False, **params) -> requests.Response:
        response = self.session.get(
            self.url(path), params=params, headers=self._cookie_header(), allow_redirects=False
        )
        while follow and response.is_redirect:
            response = self.session.get(
                self.url(response.headers["Location"]), headers=self._cookie_header(), allow_redirects=False
            )
        return self._keep(response)

    def post(
        self, path: str, data: dict | None = None, *, csrf: bool = True, follow: bool = False
    ) -> requests.Response:
        data = dict(data or {})
        if csrf:
            data["csrfmiddlewaretoken"] = self.csrf_token
        response = self.session.post(
            self.url(path), data=data, headers=self._cookie_header(), allow_redirects=False
        )
        if follow and response.is_redirect:
            return self.get(response.headers["Location"], follow=True)
        return self._keep(response)

    def messages(self, path: str = "/admin/") -> list[str]:
        """The admin messages shown on the next page (messages are consumed when shown)."""
        html = self.get(path, follow=True).text
        return messages_in(html)


def messages_in(html: str) -> list[str]:
    """The texts of the admin's message list in a page."""
    found = re.search(r'<ul class="messagelist">(.*?)</ul>', html, re.S)
    items = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S) if found else []
    return [re.sub(r"\s+", " ", item).strip() for item in items]


def csrf_client(user) -> Client:
    """Django's test client logged in as `user`, refusing POSTs without a CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def post(client: Client, url: str, data: dict | None = None, **kwargs):
    """A POST as the browser sends it: the CSRF token from the page's cookie."""
    client.get(reverse("admin:index"))
    token = client.cookies["csrftoken"].value
    return client.post(url, {"csrfmiddlewaretoken": token, **(data or {})}, **kwargs)
