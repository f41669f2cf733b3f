"""Every URL the site has, walked from the URL configuration and asked for anonymously: only the sign-in
page, the load balancer's health URL and Microsoft Graph's notification endpoint answer without a
sign-in, and the endpoint tells a stranger nothing."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

PUBLIC = {
    "/admin/login/": "the sign-in page",
    "/admin/logout/": "the signed-out page",
    "/health/": "the load balancer's health URL (no details)",
    "/graph/notifications/": "Graph change notifications (proved by clientState)",
    "/graph/lifecycle/": "Graph lifecycle notifications (proved by clientState)",
}


def walk(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def concrete(route: str) -> str:
    """A URL for the route: 1 for each parameter, the regex anchors dropped."""
    url = re.sub(r"<(?:\w+:)?\w+>", "1", route)
    url = re.sub(r"\(\?P<\w+>[^)]*\)", "1", url)
    return "/" + url.replace("^", "").replace("$", "").replace("\\", "")


def test_only_the_sign_in_health_and_graph_endpoints_answer_anonymously():
    answered = {}
    for route in walk(get_resolver().url_patterns):
        url = concrete(route)
        if "(" in url or "[" in url:  # a regex route (the admin's app index, static files) is filled below
            url = "/admin/exchange_sync/" if url.startswith("/admin/") else url
            if "(" in url or "[" in url:
                continue
        for method in ("get", "post"):
            response = getattr(Client(), method)(url)
            signed_out = response.status_code in (301, 302) and (
                "/admin/login/" in response.get("Location", "")
                or response["Location"].rstrip("/") == url.rstrip("/")
            )
            if not signed_out and response.status_code not in (404, 405):
                answered.setdefault(url, set()).add(method)
    assert set(answered) - {"/"} <= set(PUBLIC), answered  # "/" redirects to the admin
    assert {"/graph/notifications/", "/graph/lifecycle/"} <= set(answered)


def test_the_notification_endpoint_tells_a_stranger_nothing():
    url = reverse("graph_notifications")
    for body in (b"{", b'{"value": [{"subscriptionId": "x", "clientState": "y"}]}'):
        response = Client().post(url, data=body, content_type="application/json")
        assert response.content == b""
        assert response.status_code in (202, 400)
    assert Client().get(url).status_code == 405
