"""Emulator settings. Every knob is a field; most can be changed at runtime via Emulator.configure."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Graph's Outlook limits per app and mailbox: 4 requests in flight, 10,000 requests per 10 minutes.
# Contact lists page 10 by default and at most 1000 per $top.
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_RATE_LIMIT = 10_000
DEFAULT_RATE_WINDOW_S = 600.0
MAX_TOP = 1000
DEFAULT_TOP = 10
# contact delta pages: a Microsoft answer puts both the default and the cap of odata.maxpagesize at 200.
DEFAULT_DELTA_PAGE_SIZE = 200
MAX_BATCH_REQUESTS = 20
# Change notifications: Graph's documented answer deadlines (3 s, 10 s for retries and validation) and the
# contact subscription cap a live tenant enforced (10,070 minutes; the documentation says 10,080).
DEFAULT_SUBSCRIPTION_MAX_MINUTES = 10_070


@dataclass
class EmulatorConfig:
    tenant: str = "bcsync-demo"
    client_id: str = "bcsync-local"
    client_secret: str = "local-emulator-secret"  # noqa: S105 - documented local default
    mailboxes: list[str] = field(default_factory=list)
    # Every address in this domain is a licensed mailbox, created when first addressed (the local demo).
    mailbox_domain: str | None = None
    # Public URLs written into discovery documents and @odata.nextLink/deltaLink values. The application
    # keeps Microsoft's real URLs and rewrites scheme+host in its transport, so these default to Microsoft's.
    authority_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    state_file: str | None = None
    save_debounce_s: float = 1.0
    latency_ms: float = 0.0
    item_latency_ms: float = 0.0
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    rate_limit: int = DEFAULT_RATE_LIMIT
    rate_window_s: float = DEFAULT_RATE_WINDOW_S
    token_lifetime_s: int = 3600
    fault_rate_429: float = 0.0
    fault_rate_503: float = 0.0
    fault_rate_504: float = 0.0
    fault_seed: int | None = None
    retry_after_s: int = 1  # Retry-After sent with throttling and (when enabled) 503 responses
    retry_after_on_503: bool = True
    delta_page_size: int = DEFAULT_DELTA_PAGE_SIZE  # default and cap of Prefer: odata.maxpagesize on delta
    delta_token_max_age_s: float | None = None  # older delta/skip tokens answer 410 syncStateNotFound
    delta_replay: bool = False  # each delta round re-sends the previous round's changes too
    shuffle_batch_responses: bool = True
    # What the tenant's administrator granted the app: "application" (Contacts.ReadWrite as an
    # application permission: client-credentials tokens reach every mailbox), "delegated" (only as a
    # delegated permission: users sign in, client-credentials tokens get 403) or "both".
    grant: str = "application"
    # Registered redirect URIs of the app (exact match; http://localhost and http://127.0.0.1 match any port).
    redirect_uris: list[str] = field(default_factory=list)
    # UPN -> password for the sign-in page; a mailbox without one signs in with its address alone.
    mailbox_passwords: dict[str, str] = field(default_factory=dict)
    # PEM texts of the app's registered certificates (client assertions are checked against them).
    client_certificates: list[str] = field(default_factory=list)
    # Base URL the browser reaches the sign-in page at (authorization_endpoint in discovery);
    # default: the scheme and Host the discovery request came to.
    sign_in_url: str | None = None
    auth_code_lifetime_s: int = 600
    refresh_token_max_inactive_s: int = 90 * 24 * 3600  # Entra's fixed 90 days of inactivity
    # Entra keeps a refresh token valid after it was redeemed; on, a redeemed one stops working (this
    # catches a client that does not keep the rotated token).
    strict_refresh_rotation: bool = False
    notification_delay_ms: float = 0.0  # added before each change notification is sent
    notification_batch_ms: float = 50.0  # notifications due within this window share one POST
    notification_duplicate_rate: float = 0.0  # probability a change notification is sent twice
    notification_drop_rate: float = 0.0  # probability a change notification is never sent
    notification_timeout_s: float = 3.0  # a first delivery answered later (or not 2xx) is retried
    notification_retry_timeout_s: float = 10.0  # how long retries wait for an answer
    notification_retry_base_s: float = 1.0  # retry n waits base * 2**(n-1)
    notification_max_attempts: int = 5  # then the notification is dropped
    validation_timeout_s: float = 10.0  # the validation handshake's deadline
    subscription_max_minutes: int = DEFAULT_SUBSCRIPTION_MAX_MINUTES
    slow_endpoint_delay_s: float = 600.0  # extra delay for an endpoint marked "slow"
    dropped_endpoint_s: float = 600.0  # how long an endpoint marked "drop" loses its notifications


# Fields fixed for the life of an Emulator (identity of the tenant and where state lives).
STARTUP_ONLY = frozenset(
    {"mailboxes", "mailbox_domain", "state_file", "mailbox_passwords", "client_certificates"}
)
GRANTS = ("application", "delegated", "both")
# One-shot actions accepted by configure() next to the knobs.
ACTIONS = frozenset({"expire_tokens_now", "expire_delta_tokens_now"})


def coerce_knob(name: str, value: Any) -> Any:
    """Convert a JSON/CLI value to the type of config field `name`; ValueError when it does not fit."""
    fields = {f.name: f for f in dataclasses.fields(EmulatorConfig)}
    if name not in fields or name in STARTUP_ONLY:
        raise ValueError(f"unknown or read-only knob {name!r}")
    annotation = str(fields[name].type)
    if name == "grant" and value not in GRANTS:
        raise ValueError(f"grant must be one of {', '.join(GRANTS)}")
    if annotation.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"{name} must be a list of strings")
        return list(value)
    if value is None:
        if "None" not in annotation:
            raise ValueError(f"{name} cannot be null")
        return None
    if annotation.startswith("bool"):
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return bool(value)
    if annotation.startswith("int"):
        return int(value)
    if annotation.startswith("float"):
        return float(value)
    return str(value)


def config_as_dict(config: EmulatorConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
