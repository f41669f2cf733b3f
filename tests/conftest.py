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


@pytest.fixture
def m365_emulator():
    """A running Microsoft 365 emulator (sign-in + Graph contacts) on a free port; see m365_emulator/README.md.

    Tenant `bcsync-test`, client id `bcsync-tests`, secret `test-secret`, no mailboxes (add them with
    `m365_emulator.emulator.add_mailbox(upn)`). `.url` is its base URL.
    """
    from m365_emulator import EmulatorConfig, serve_in_thread

    server = serve_in_thread(
        EmulatorConfig(tenant="bcsync-test", client_id="bcsync-tests", client_secret="test-secret", mailboxes=[])
    )
    yield server
    server.stop()
