"""The role's beat heartbeat (monitoring): beat sends it on a schedule, a worker runs it.

It writes the time it ran into the broker's Redis database, where the Redis exporter's script
reads its age (redis_script_values{key="NAME/beat/heartbeat_age_seconds"}); the alert
CeleryBeatStale fires when that age passes a few schedule intervals: beat stopped sending, or no
worker consumes the queue it goes to. Imported by the project's workers through CELERY_IMPORTS
(the deploy settings add it when monitoring is on).
"""

from __future__ import annotations

import time

from celery import shared_task

KEY = "django_celery:heartbeat"


@shared_task(name="django_celery.heartbeat", ignore_result=True)
def heartbeat() -> None:
    # A client of its own (conn_or_acquire, as kombu's own queue size does): the channel's
    # `client` attribute is its asynchronous one, which does not wait for the reply.
    with heartbeat.app.connection_for_write() as connection:
        with connection.default_channel.conn_or_acquire() as client:
            client.set(KEY, repr(time.time()))
