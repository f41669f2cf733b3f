"""The two checks django-health-check does not ship: django-q2's broker and its workers."""

from __future__ import annotations

import dataclasses

from asgiref.sync import sync_to_async
from django.db import transaction
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.status import Stat
from health_check import HealthCheck
from health_check.exceptions import ServiceUnavailable

RUNNING = {str(Conf.IDLE), str(Conf.WORKING)}

# The checks reach the database through sync_to_async, i.e. in the request's own thread and on its
# connection, which Django closes or reuses; in the library's executor threads each probe would leave
# a connection open.


def ask_broker() -> None:
    broker = get_broker()
    # A failed query rolls back this block only, and leaves the request's connection usable.
    with transaction.atomic():
        broker.ping()  # Redis: PING; the ORM broker answers True
        broker.queue_size()  # the ORM broker: a query on its queue table


@dataclasses.dataclass
class QueueBroker(HealthCheck):
    """django-q2's broker answers."""

    async def run(self) -> None:
        try:
            await sync_to_async(ask_broker)()
        except Exception as error:
            raise ServiceUnavailable(f"the task broker did not answer ({type(error).__name__})") from error


@dataclasses.dataclass
class QueueWorker(HealthCheck):
    """A qcluster reported itself within the last few seconds: each cluster saves its status (a
    `Stat`) to the broker every half second, and the broker keeps it 3 seconds."""

    async def run(self) -> None:
        stats = await sync_to_async(Stat.get_all)()
        if not any(str(stat.status) in RUNNING for stat in stats):
            raise ServiceUnavailable("no django-q2 cluster reported in the last 3 seconds")
