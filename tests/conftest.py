"""Shared fixtures. Tests mirror the packages they test (tests/contacts, tests/exchange_sync, ...)."""

import pytest

from tests.factories import UserFactory


@pytest.fixture
def staff_user(db):
    """A salesperson: staff, not a superuser."""
    return UserFactory(username="ann")


@pytest.fixture
def other_staff_user(db):
    return UserFactory(username="bob")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
