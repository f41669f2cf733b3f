"""Live updates: a Sync soon after a contact changes on either side, coalesced per user
(contact_sync.request_coalesced_sync); the Job Queue's polling stays as the backstop.

- Business Central side: the contact master announces every committed write (contacts.changes);
  each user with background synchronization on whose folder the change may concern gets a Sync,
  except the user whose own Sync wrote it.
- Outlook side: a Graph subscription on each such user's sync folder, created when background
  synchronization is on and the folder is known, renewed well before it expires, recreated when Graph
  removed it, each time followed by a Sync. A notification only means "sync this user": duplicates,
  reordering and Graph's batching are harmless, and the Sync's delta read does the rest.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, connections
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import Schedule
from django_q.tasks import async_task

from ..graph import BadRequest, GraphError, ItemNotFound, folder_resource
from ..models import (
    ContactLink,
    ContactSyncSetup,
    ExchangeSyncSetup,
    GraphSubscription,
    SubscriptionStatus,
    UnconfirmedChange,
)
from ..sync.reader import chunks, in_chunks, scope_queryset
from . import contact_sync, m365_connections

logger = logging.getLogger(__name__)

# Graph's documented maximum for contacts is 10,080 minutes; live tenants refuse more than 10,070.
SUBSCRIPTION_MINUTES = 10_000
# Renewed once less than this is left: the schedule runs every few minutes, so a few missed runs or
# a day of Graph trouble still leave time.
RENEW_WITHIN = timedelta(days=2)
SCHEDULE_NAME = "maintain-graph-subscriptions"
SCHEDULE_MINUTES = 10
TASK_FUNC = "exchange_sync.tasks.maintain_subscriptions_task"
SUBSCRIBE_TASK_FUNC = "exchange_sync.tasks.subscribe_task"
LIFECYCLE_TASK_FUNC = "exchange_sync.tasks.handle_lifecycle_event_task"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


# --- when live updates are on ---------------------------------------------------------------------


def off_reason() -> str:
    """Why live updates are off for everyone, or "" when they are on."""
    base = settings.PUBLIC_BASE_URL
    if not base:
        return (
            "Live updates are off: PUBLIC_BASE_URL is not set, so Microsoft 365 has no address to "
            "notify bcsync at. Contacts sync when the Job Queue Entry runs or a button is pressed."
        )
    parts = urlsplit(base)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        return ""
    return (
        "Live updates are off: PUBLIC_BASE_URL must be an https address (plain http only for "
        "127.0.0.1 or localhost). Contacts sync when the Job Queue Entry runs or a button is pressed."
    )


def _public_url(name: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(name)


def _background_users() -> Iterable[int]:
    return ExchangeSyncSetup.objects.filter(enabled=True, user__is_active=True).values_list(
        "user_id", flat=True
    )


# --- Business Central side ------------------------------------------------------------------------

# The dispatch_uid under which `contacts_changed` below listens (exchange_sync.apps).
CONTACTS_RECEIVER = "exchange_sync_live_contacts"


def contacts_changed(
    *, contact_ids: frozenset[int], contact_nos: frozenset[str], origins: frozenset, **kwargs: Any
) -> None:
    """contacts.changes.contacts_changed receiver (after commit): a Sync for each user with
    background synchronization on whose folder holds one of the contacts (linked to it, also by
    number for deleted ones) or whose scope now takes one in. A user's own Sync's writes are left out
    for that user. Errors are logged, never raised into the writer whose transaction has committed."""
    try:
        for user_id in users_concerned(contact_ids=contact_ids, contact_nos=contact_nos, origins=origins):
            contact_sync.request_coalesced_sync(user_id=user_id)
    except Exception:
        logger.exception("Live updates: could not request a Sync for a Business Central change")


def users_concerned(
    *, contact_ids: Iterable[int], contact_nos: Iterable[str], origins: Iterable
) -> list[int]:
    """The users with background synchronization on whom a change to these contacts may concern:
    their folder holds one (linked, also by number for deleted ones) or their scope now takes one in."""
    ids, nos, origins = sorted(contact_ids), sorted(contact_nos), set(origins)
    setups = {
        setup.user_id: setup
        for setup in ContactSyncSetup.objects.filter(user_id__in=list(_background_users()))
        if origins != {setup.user_id}  # its own Sync wrote these: that Sync has them already
    }
    links = ContactLink.objects.filter(setup__user_id__in=list(setups))
    concerned = {
        user_id
        for field, values in (("contact_id", ids), ("contact_no", nos))
        for user_id in in_chunks(
            values,
            lambda chunk, field=field: links.filter(**{f"{field}__in": chunk}).values_list(
                "setup__user_id", flat=True
            ),
        )
    }
    rest = [setup for user_id, setup in setups.items() if user_id not in concerned]
    if ids and rest:
        concerned.update(_in_scope(rest, ids))
    return sorted(concerned)


# A setup's scope as SQL, built once per filter: building the ORM query is what a burst of edits would
# spend its time on (ms per user and edit), running it takes a fraction of that.
_scope_sql: dict[tuple[int, str], tuple[str, tuple]] = {}


def _scope_of(setup: ContactSyncSetup) -> tuple[str, tuple]:
    key = (setup.pk, json.dumps(setup.contact_filter, sort_keys=True))
    if key not in _scope_sql:
        if len(_scope_sql) > 10_000:
            _scope_sql.clear()
        _scope_sql[key] = scope_queryset(setup).order_by().values("id").query.sql_with_params()
    return _scope_sql[key]


def _in_scope(setups: list[ContactSyncSetup], ids: list[int]) -> set[int]:
    """The users among `setups` whose scope takes in one of the contacts: one statement per 20 users
    and 200 contacts (SQLite limits the parameters of a statement)."""
    found: set[int] = set()
    with connection.cursor() as cursor:
        for some in chunks(setups, 20):
            for chunk in chunks(ids, 200):
                placeholders = ", ".join(["%s"] * len(chunk))
                parts, params = [], []
                for setup in some:
                    sql, scope_params = _scope_of(setup)
                    # The SQL is the ORM's own; every value goes as a parameter.
                    inner = f"SELECT 1 FROM ({sql}) scope WHERE scope.id IN ({placeholders})"  # noqa: S608
                    parts.append(f"SELECT %s WHERE EXISTS ({inner})")
                    params += [setup.user_id, *scope_params, *chunk]
                cursor.execute(" UNION ALL ".join(parts), params)
                found.update(row[0] for row in cursor.fetchall())
    return found


# --- subscriptions --------------------------------------------------------------------------------


def ensure_subscription(*, user: AbstractBaseUser) -> GraphSubscription | None:
    """Make the user's subscription match their setup: none without background synchronization or
    live updates; created (or recreated on another folder) when missing, renewed when it expires
    within RENEW_WITHIN, recreated when renewal finds it gone. Every new subscription is followed by a
    Sync, so that nothing changed before it stays unseen. Raises GraphError or SetupIncomplete."""
    exchange, setup = contact_sync.setups_for(user=user)
    if not exchange.enabled or not user.is_active or off_reason():
        remove_subscription(user=user)
        return None
    if not setup.folder_id:
        return None  # the first Sync creates the folder, and its end subscribes
    mailbox = contact_sync.mailbox_of(user=user)
    resource = folder_resource(mailbox, setup.folder_id)
    subscription, _ = GraphSubscription.objects.get_or_create(user=user)
    now = timezone.now()
    client = m365_connections.graph_client_for(user=user)
    if (
        subscription.graph_id
        and subscription.status == SubscriptionStatus.ACTIVE
        and subscription.resource == resource
        and subscription.expires_at
        and subscription.expires_at > now
    ):
        if subscription.expires_at - now > RENEW_WITHIN:
            return subscription
        try:
            renewed = client.renew_subscription(
                mailbox=mailbox, subscription_id=subscription.graph_id, expires_at=_expiry(now)
            )
        except ItemNotFound:
            logger.info("Graph subscription of %s was gone at renewal; creating a new one", user)
        else:
            return _record(subscription, renewed_at=now, expires_at=_parse(renewed, now))
    if subscription.graph_id:
        client.delete_subscription(mailbox=mailbox, subscription_id=subscription.graph_id)
    return _create(client=client, subscription=subscription, mailbox=mailbox, resource=resource, now=now)


def _create(
    *, client, subscription: GraphSubscription, mailbox: str, resource: str, now: datetime
) -> GraphSubscription:
    subscription.client_state = secrets.token_urlsafe(32)
    subscription.graph_id = ""
    subscription.save(update_fields=["client_state", "graph_id"])
    arguments = {
        "mailbox": mailbox,
        "resource": resource,
        "notification_url": _public_url("graph_notifications"),
        "lifecycle_url": _public_url("graph_lifecycle"),
        "client_state": subscription.client_state,
        "expires_at": _expiry(now),
    }
    try:
        created = client.create_subscription(**arguments)
    except BadRequest as exc:
        if exc.status != 409:
            raise
        # One left over from before (a lost answer, a restored database): replace it.
        for existing in client.list_subscriptions(mailbox=mailbox):
            if str(existing.get("resource", "")).strip("/").casefold() == resource.casefold():
                client.delete_subscription(mailbox=mailbox, subscription_id=existing["id"])
        created = client.create_subscription(**arguments)
    subscription = _record(
        subscription,
        graph_id=created["id"],
        resource=resource,
        created_at=now,
        renewed_at=now,
        expires_at=_parse(created, now),
    )
    contact_sync.request_coalesced_sync(user_id=subscription.user_id)
    return subscription


def _expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=SUBSCRIPTION_MINUTES)


def _parse(body: Mapping[str, Any], now: datetime) -> datetime:
    return parse_datetime(str(body.get("expirationDateTime", ""))) or _expiry(now)


def _record(subscription: GraphSubscription, **values: Any) -> GraphSubscription:
    values = {"status": SubscriptionStatus.ACTIVE, "last_error": "", **values}
    GraphSubscription.objects.filter(pk=subscription.pk).update(**values)
    subscription.refresh_from_db()
    return subscription


def remove_subscription(*, user: AbstractBaseUser) -> None:
    """Delete the user's subscription in Graph (best effort: it expires on its own) and here."""
    subscription = GraphSubscription.objects.filter(user=user).first()
    if subscription is None:
        return
    if subscription.graph_id and not off_reason():
        try:
            m365_connections.graph_client_for(user=user).delete_subscription(
                mailbox=contact_sync.mailbox_of(user=user), subscription_id=subscription.graph_id
            )
        except (GraphError, contact_sync.SetupIncomplete) as exc:
            logger.info("Graph subscription of %s not deleted (%s); it expires on its own", user, exc)
    subscription.delete()


def maintain_subscriptions() -> dict[str, int]:
    """The schedule's work: every user with background synchronization on has a current
    subscription; those of users without it go. One user's failure is recorded on their row (shown
    on their setup) and does not stop the others."""
    counts = {"ok": 0, "failed": 0, "removed": 0}
    users = get_user_model().objects.filter(pk__in=list(_background_users())).order_by("pk")
    for user in users:
        try:
            ensure_subscription(user=user)
            counts["ok"] += 1
        except (GraphError, contact_sync.SetupIncomplete) as exc:
            counts["failed"] += 1
            note_failure(user_id=user.pk, message=str(exc))
    for subscription in GraphSubscription.objects.exclude(user__in=users).select_related("user"):
        remove_subscription(user=subscription.user)
        counts["removed"] += 1
    return counts


def note_failure(*, user_id: int, message: str) -> None:
    GraphSubscription.objects.update_or_create(
        user_id=user_id, defaults={"status": SubscriptionStatus.FAILED, "last_error": message[:2000]}
    )


def subscribe_soon(*, user_id: int) -> None:
    """Queue `subscribe` for the user (background synchronization switched on or off, a Sync that
    created or moved the folder): creating a subscription validates against this site's own
    endpoint, so it never runs inside a request."""
    async_task(SUBSCRIBE_TASK_FUNC, user_id, task_name=f"subscribe-{user_id}")


def subscribe(*, user_id: int) -> None:
    """ensure_subscription for a worker; a user whose folder does not exist yet gets a Sync, whose
    end subscribes."""
    user = get_user_model().objects.get(pk=user_id)
    try:
        subscription = ensure_subscription(user=user)
    except (GraphError, contact_sync.SetupIncomplete) as exc:
        note_failure(user_id=user_id, message=str(exc))
        return
    if subscription is None and wanted_resource(user=user) == "":
        contact_sync.request_coalesced_sync(user_id=user_id)


def wanted_resource(*, user: AbstractBaseUser) -> str | None:
    """The resource the user's subscription should be on: None when they should have none, "" while
    their folder does not exist yet."""
    if (
        off_reason()
        or not ExchangeSyncSetup.objects.filter(user=user, enabled=True, user__is_active=True).exists()
    ):
        return None
    setup = ContactSyncSetup.objects.filter(user=user).first()
    if setup is None or not setup.folder_id:
        return ""
    try:
        return folder_resource(contact_sync.mailbox_of(user=user), setup.folder_id)
    except contact_sync.SetupIncomplete:
        return None


def after_run(*, run, **kwargs: Any) -> None:
    """contact_sync.run_finished receiver: subscribe once the folder exists, again when it moved."""
    wanted = wanted_resource(user=run.user)
    if not wanted:
        return
    if (
        not GraphSubscription.objects.filter(
            user_id=run.user_id, status=SubscriptionStatus.ACTIVE, resource=wanted
        )
        .exclude(graph_id="")
        .exists()
    ):
        subscribe_soon(user_id=run.user_id)


# --- notifications --------------------------------------------------------------------------------


class MalformedNotification(ValueError):
    """A body that is not a Graph notification collection."""


def _items(payload: Any) -> list[Mapping[str, Any]]:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("value"), list):
        raise MalformedNotification("no value list")
    items = payload["value"]
    if not all(isinstance(item, Mapping) and isinstance(item.get("subscriptionId"), str) for item in items):
        raise MalformedNotification("an item without a subscription id")
    return items


def _authentic(items: list[Mapping[str, Any]]) -> list[tuple[GraphSubscription, Mapping[str, Any]]]:
    """The items whose subscription is known and whose clientState is its secret; the others are
    logged (by subscription id only) and dropped."""
    ids = {item["subscriptionId"] for item in items}
    known = {s.graph_id: s for s in GraphSubscription.objects.filter(graph_id__in=ids).exclude(graph_id="")}
    found = []
    for item in items:
        subscription = known.get(item["subscriptionId"])
        if subscription is None:
            logger.warning(
                "Graph notification for unknown subscription %.64s ignored", item["subscriptionId"]
            )
            continue
        state = item.get("clientState")
        if not isinstance(state, str) or not hmac.compare_digest(
            state.encode(), subscription.client_state.encode()
        ):
            logger.warning(
                "Graph notification for subscription %s with a wrong clientState ignored",
                subscription.graph_id,
            )
            continue
        found.append((subscription, item))
    return found


def _change_key(item: Mapping[str, Any]) -> str:
    data = item.get("resourceData")
    etag = data.get("@odata.etag") if isinstance(data, Mapping) else None
    if not isinstance(etag, str):
        return ""
    return etag.removeprefix("W/").strip('"')


def _is_echo(subscription: GraphSubscription, item: Mapping[str, Any]) -> bool:
    """A created/updated notification whose version is the one bcsync stored after writing it."""
    data = item.get("resourceData")
    graph_id = data.get("id") if isinstance(data, Mapping) else None
    change_key = _change_key(item)
    if item.get("changeType") == "deleted" or not isinstance(graph_id, str) or not change_key:
        return False
    return ContactLink.objects.filter(
        setup__user_id=subscription.user_id, graph_id=graph_id, change_key=change_key
    ).exists()


def handle_notifications(*, payload: Any) -> int:
    """Change notifications: record them and request one coalesced Sync per user concerned (echoes
    of bcsync's own writes aside). Returns how many users get a Sync. Raises MalformedNotification."""
    now = timezone.now()
    users: set[int] = set()
    noted: set[int] = set()
    unconfirmed: list[UnconfirmedChange] = []
    writing: dict[int, bool] = {}
    for subscription, item in _authentic(_items(payload)):
        noted.add(subscription.pk)
        user_id = subscription.user_id
        if _is_echo(subscription, item):
            continue
        if user_id not in writing:
            writing[user_id] = contact_sync.run_is_writing(user_id=user_id)
        if writing[user_id]:  # perhaps that run's own write: its end decides
            data = item.get("resourceData")
            graph_id = data.get("id") if isinstance(data, Mapping) else None
            unconfirmed.append(
                UnconfirmedChange(
                    user_id=user_id, graph_id=str(graph_id or "")[:512], change_key=_change_key(item)[:256]
                )
            )
        else:
            users.add(user_id)
    GraphSubscription.objects.filter(pk__in=noted).update(last_notification_at=now)
    UnconfirmedChange.objects.bulk_create(unconfirmed)
    for user_id in {change.user_id for change in unconfirmed}:
        # A run that ended meanwhile did not see these: settle them here.
        if not contact_sync.run_is_writing(user_id=user_id) and contact_sync.confirm_outlook_changes(
            user_id=user_id
        ):
            users.add(user_id)
    for user_id in sorted(users):
        contact_sync.request_coalesced_sync(user_id=user_id)
    return len(users)


LIFECYCLE_EVENTS = ("missed", "reauthorizationRequired", "subscriptionRemoved")


def handle_lifecycle(*, payload: Any) -> int:
    """Lifecycle notifications: each is queued for a worker (renewal and recreation call Graph, which
    validates against this endpoint again), so the answer stays within Graph's 3 seconds."""
    now = timezone.now()
    queued = 0
    for subscription, item in _authentic(_items(payload)):
        event = item.get("lifecycleEvent")
        if event not in LIFECYCLE_EVENTS:
            logger.warning(
                "Graph lifecycle event %.40r for subscription %s ignored", event, subscription.graph_id
            )
            continue
        GraphSubscription.objects.filter(pk=subscription.pk).update(last_notification_at=now)
        async_task(LIFECYCLE_TASK_FUNC, subscription.user_id, event, subscription.graph_id)
        queued += 1
    return queued


def handle_lifecycle_event(*, user_id: int, event: str, graph_id: str) -> None:
    """`missed` → a Sync; `reauthorizationRequired` → renew (which reauthorizes), else recreate, then
    a Sync; `subscriptionRemoved` → recreate, then a Sync (the new subscription requests it)."""
    user = get_user_model().objects.get(pk=user_id)
    subscription = GraphSubscription.objects.filter(user=user, graph_id=graph_id).first()
    if subscription is None:
        return  # replaced since: the new one had its Sync
    try:
        if event == "reauthorizationRequired":
            try:
                m365_connections.graph_client_for(user=user).reauthorize_subscription(
                    mailbox=contact_sync.mailbox_of(user=user), subscription_id=graph_id
                )
            except ItemNotFound:
                _mark_removed(subscription)
                ensure_subscription(user=user)
        elif event == "subscriptionRemoved":
            _mark_removed(subscription)
            ensure_subscription(user=user)
    except (GraphError, contact_sync.SetupIncomplete) as exc:
        note_failure(user_id=user_id, message=str(exc))
    contact_sync.request_coalesced_sync(user_id=user_id)


def _mark_removed(subscription: GraphSubscription) -> None:
    GraphSubscription.objects.filter(pk=subscription.pk).update(status=SubscriptionStatus.REMOVED)


# --- visibility and the schedule ------------------------------------------------------------------


def status_of(*, user: AbstractBaseUser) -> dict[str, Any]:
    """What the setup page shows: on or off (and why), the subscription's expiry, the last
    notification, the last error. Never the clientState."""
    reason = off_reason()
    subscription = GraphSubscription.objects.filter(user=user).first()
    enabled = ExchangeSyncSetup.objects.filter(user=user, enabled=True).exists()
    if not reason and not enabled:
        reason = "Live updates are off: they come with Background Synchronization, which is off."
    elif not reason and (subscription is None or not subscription.graph_id):
        reason = (
            "Live updates are starting: the subscription is created after the next Sync."
            if subscription is None or not subscription.last_error
            else "Live updates are not working: the subscription could not be created."
        )
    on = not reason and subscription is not None and subscription.status == SubscriptionStatus.ACTIVE
    return {
        "on": on,
        "reason": reason,
        "status": subscription.get_status_display() if subscription else "",
        "expires_at": subscription.expires_at if subscription and subscription.graph_id else None,
        "last_notification_at": subscription.last_notification_at if subscription else None,
        "last_error": subscription.last_error if subscription else "",
    }


def users_without_live_updates() -> Q:
    """A Q on ContactSyncSetup: setups of users with no working subscription."""
    working = GraphSubscription.objects.filter(status=SubscriptionStatus.ACTIVE).exclude(graph_id="")
    return ~Q(user__in=working.values("user"))


def ensure_subscription_schedule(*, using: str = "default", **kwargs: Any) -> None:
    """The django-q2 Schedule that renews and recreates subscriptions every SCHEDULE_MINUTES,
    created once by post_migrate as the prune schedule is."""
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    Schedule.objects.using(using).get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": TASK_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": SCHEDULE_MINUTES,
            "repeats": -1,
        },
    )
