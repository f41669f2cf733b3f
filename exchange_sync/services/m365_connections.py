"""Each user's delegated connection to Microsoft 365 (M365_AUTH_MODE=delegated): Connect (MSAL's
authorization-code flow), Disconnect, the encrypted token cache runs sign in with, and "needs
reconnecting" when Microsoft wants the user to sign in again.

The MSAL token cache is encrypted with MultiFernet under TOKEN_ENCRYPTION_KEYS (newest first), bound
to its user: the plaintext names the user, so a ciphertext copied onto another row is refused."""

from __future__ import annotations

import json
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from ..graph import (
    GraphClient,
    MailboxBudget,
    SignInRefused,
    SignInRequired,
    app_registration_from_settings,
    auth_mode,
    finish_sign_in,
    graph_client_from_settings,
    graph_session,
    start_sign_in,
)
from ..models import M365Connection, M365ConnectionStatus, UserCard

logger = logging.getLogger(__name__)

# The session key of the sign-in in progress (MSAL's flow: state, PKCE verifier, nonce).
SESSION_FLOW_KEY = "m365_sign_in_flow"
NOT_CONNECTED = "you have not connected to Microsoft 365 yet"


class WrongAccount(SignInRefused):
    """Someone signed in as another account than their User Card's; nothing was stored."""


def delegated() -> bool:
    return auth_mode() == "delegated"


def _keys() -> MultiFernet:
    keys = settings.TOKEN_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured(
            "M365_AUTH_MODE=delegated needs TOKEN_ENCRYPTION_KEYS (Fernet keys, newest first)."
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        # Fernet's message is generic and the key itself must not be echoed.
        raise ImproperlyConfigured(
            "TOKEN_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None


def _encrypt(*, user_id: int, cache: str) -> bytes:
    return _keys().encrypt(json.dumps({"user": user_id, "cache": cache}).encode())


def _decrypt(connection: M365Connection) -> str:
    """The plaintext cache; raises `InvalidToken` for a wrong key, tampering or another row's value."""
    payload = json.loads(_keys().decrypt(bytes(connection.token_cache)))
    if payload.get("user") != connection.user_id:
        raise InvalidToken
    return payload["cache"]


def connection_of(*, user: AbstractBaseUser) -> M365Connection | None:
    return M365Connection.objects.filter(user=user).first()


def reconnect_reason(*, user: AbstractBaseUser) -> str | None:
    """Why this user's runs cannot sign in until they reconnect; None when they can (or in app mode)."""
    if not delegated():
        return None
    connection = connection_of(user=user)
    if connection is None:
        return NOT_CONNECTED
    if connection.status == M365ConnectionStatus.NEEDS_RECONNECTING:
        return connection.reason
    return None


class StoredTokenCache:
    """The `TokenCacheStore` of one connection: the database row, decrypted on load."""

    def __init__(self, connection: M365Connection) -> None:
        self.connection = connection
        self.home_account_id = connection.home_account_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user_id={self.connection.user_id})"

    def load(self) -> str:
        connection = self.connection
        try:
            cache = _decrypt(connection)
        except InvalidToken:
            reason = "the stored sign-in cannot be decrypted with TOKEN_ENCRYPTION_KEYS"
            logger.error(
                "The token cache of user %s cannot be decrypted with TOKEN_ENCRYPTION_KEYS",
                connection.user_id,
            )
            self.sign_in_required(reason=reason)
            raise SignInRequired.for_reason(reason, code="undecryptable") from None
        M365Connection.objects.filter(pk=connection.pk).update(last_used_at=timezone.now())
        return cache

    def save(self, serialized: str) -> None:
        # Only while still connected: a Disconnect or a new Connect during the run wins.
        M365Connection.objects.filter(
            pk=self.connection.pk, home_account_id=self.home_account_id, status=M365ConnectionStatus.CONNECTED
        ).update(
            token_cache=_encrypt(user_id=self.connection.user_id, cache=serialized),
            last_used_at=timezone.now(),
        )

    def sign_in_required(self, *, reason: str) -> None:
        M365Connection.objects.filter(pk=self.connection.pk, home_account_id=self.home_account_id).update(
            status=M365ConnectionStatus.NEEDS_RECONNECTING, reason=reason
        )


def reconnect_message(*, reason: str) -> str:
    """What a refused run or validation tells the user."""
    if reason == NOT_CONNECTED:
        return "Connect to Microsoft 365 first: open your Exchange Sync Setup and press Connect."
    return str(SignInRequired.for_reason(reason, code="reconnect"))


def graph_client_for(*, user: AbstractBaseUser, budget: MailboxBudget | None = None) -> GraphClient:
    """The Graph client that acts for this user: the app's in app mode, the user's own sign-in in
    delegated mode (raises `SignInRequired` while they must connect or reconnect). With `budget`, it
    is paced by the mailbox's request budget."""
    if not delegated():
        return graph_client_from_settings(budget=budget)
    connection = connection_of(user=user)
    reason = reconnect_reason(user=user)
    if connection is None or reason is not None:
        reason = reason or NOT_CONNECTED
        raise SignInRequired(reconnect_message(reason=reason), reason=reason, code="reconnect")
    return graph_client_from_settings(token_cache=StoredTokenCache(connection), budget=budget)


def _expected_account(user: AbstractBaseUser) -> str:
    email = UserCard.objects.filter(user=user).values_list("microsoft_365_email", flat=True).first()
    if not email:
        raise SignInRefused(
            "Your User Card has no Microsoft 365 email, so there is no mailbox to connect; an "
            "administrator enters it.",
            code="no_email",
        )
    return email


def start_connect(*, user: AbstractBaseUser, redirect_uri: str) -> dict[str, Any]:
    """Begin Connect to Microsoft 365: MSAL's flow, for the caller to keep in the user's session;
    the browser goes to its ``auth_uri``. Sign-in is offered for the User Card's mailbox."""
    _keys()  # refuse before the user signs in, not after
    return start_sign_in(
        registration=app_registration_from_settings(),
        session=graph_session(),
        redirect_uri=redirect_uri,
        login_hint=_expected_account(user),
    )


def finish_connect(
    *, user: AbstractBaseUser, flow: dict[str, Any] | None, answer: dict[str, str]
) -> M365Connection:
    """The callback: redeem the code and store the user's token cache, encrypted. Raises
    `SignInRefused` (nothing stored) for a missing, replayed or tampered answer, a refused sign-in, or
    an account other than the User Card's."""
    if not flow:
        raise SignInRefused(
            "No Microsoft 365 sign-in was in progress here (the answer was replayed, or came after "
            "the session ended). Nothing was stored; press Connect to Microsoft 365 again.",
            code="no_flow",
        )
    expected = _expected_account(user)
    signed_in = finish_sign_in(
        registration=app_registration_from_settings(), session=graph_session(), flow=flow, answer=answer
    )
    if signed_in.username.casefold() != expected.casefold():
        raise WrongAccount(
            f"You signed in to Microsoft 365 as {signed_in.username or 'an account without a username'}, "
            f"but your User Card's Microsoft 365 email is {expected}. Nothing was stored: press Connect "
            f"to Microsoft 365 again and sign in as {expected}.",
            code="wrong_account",
        )
    connection, _ = M365Connection.objects.update_or_create(
        user=user,
        defaults={
            "account": signed_in.username,
            "home_account_id": signed_in.home_account_id,
            "status": M365ConnectionStatus.CONNECTED,
            "reason": "",
            "connected_at": timezone.now(),
            "token_cache": _encrypt(user_id=user.pk, cache=signed_in.serialized_cache),
        },
    )
    logger.info("User %s connected Microsoft 365 account %s", user.pk, signed_in.username)
    return connection


def disconnect(*, user: AbstractBaseUser) -> bool:
    """Delete the user's stored tokens; False when there were none."""
    deleted, _ = M365Connection.objects.filter(user=user).delete()
    return bool(deleted)


def reencrypt_tokens() -> tuple[int, int]:
    """Re-encrypt every stored token cache under the newest key (the first of TOKEN_ENCRYPTION_KEYS),
    so older keys can then be removed. Returns how many were re-encrypted and how many no key in
    TOKEN_ENCRYPTION_KEYS could read (those users must reconnect)."""
    keys = _keys()
    rotated = unreadable = 0
    for connection in M365Connection.objects.only("pk", "user_id", "token_cache").iterator():
        try:
            new = keys.rotate(bytes(connection.token_cache))
        except InvalidToken:
            logger.error(
                "The token cache of user %s cannot be decrypted with TOKEN_ENCRYPTION_KEYS",
                connection.user_id,
            )
            unreadable += 1
            continue
        # A run that saved a refreshed cache meanwhile wrote it under the newest key already.
        rotated += M365Connection.objects.filter(pk=connection.pk, token_cache=connection.token_cache).update(
            token_cache=new
        )
    return rotated, unreadable
