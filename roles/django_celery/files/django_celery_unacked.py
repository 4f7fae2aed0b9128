"""Report, and give back, the Redis broker's messages that no live worker holds.

With acks_late, Redis keeps every delivered message in kombu's `unacked` hash until the worker
acknowledges it. When a worker's main process dies (SIGKILL, OOM killer), nobody will ever
acknowledge its running and reserved tasks: Redis hands them out again only when the
visibility timeout expires (an hour by default), and nothing shows they wait.

This command (installed by the role on every app host, run by a timer on the beat host and by
operators) reads the `unacked` entries older than a minimum age and asks every worker of the
fleet, in one `inspect query_task` call, whether it holds their tasks: a worker answers from
one table of every request it received and has not finished (running, reserved, or waiting
for its ETA), so a task moving from one state to the next cannot slip between two questions.
The entries no worker holds are orphaned. With --reclaim they go back to the head of their
queue, under kombu's restore lock and in kombu's own transaction (the ones its visibility
timeout uses), each only if its delivery time is still the one read (not delivered again
meanwhile), and only when every expected worker node answered: a worker that does not answer
(busy, in warm shutdown, its host down) may still run them, and then the visibility timeout
stays the only way back. Tasks with a rate limit are never given back: a worker holds them in
a token bucket where no inspect command sees them.

Configuration: a JSON file (DJANGO_CELERY_UNACKED_CONFIG) with the Celery app module, the
expected worker nodes, the minimum age in seconds and the inspect timeout.
Output: one JSON line of counts (see the end of main()).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple


class Entry(NamedTuple):
    """One delivered, unacknowledged message: its delivery tag, when it was delivered (the score
    kombu gives it in unacked_index), and its task's id and name."""

    tag: str
    delivered: float
    task_id: str
    task_name: str


def task_of(value: str | bytes) -> tuple[str, str]:
    """The task id and name of a kombu `unacked` hash value: JSON [message, exchange, key]."""
    message = json.loads(value)[0]
    headers = message.get("headers") or {}
    task_id = headers.get("id") or message.get("properties", {}).get("correlation_id", "")
    return task_id, headers.get("task", "")


def held_task_ids(replies: Mapping[str, Mapping] | None) -> set[str]:
    """Task ids the workers hold, from the replies to inspect query_task ({node: {id: ...}})."""
    return {task_id for found in (replies or {}).values() for task_id in found or {}}


def orphans(entries: Iterable[Entry], held: set[str], rate_limited: set[str]) -> list[Entry]:
    """The entries whose task no worker holds, leaving out tasks with a rate limit."""
    return [e for e in entries if e.task_id not in held and e.task_name not in rate_limited]


def rate_limited_tasks(app) -> set[str]:
    """Names of the registered tasks with a rate limit (the project's tasks loaded first)."""
    import django

    django.setup()
    app.loader.import_default_modules()
    if app.conf.worker_disable_rate_limits:
        return set()
    return {name for name, task in app.tasks.items() if getattr(task, "rate_limit", None)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reclaim", action="store_true", help="put orphaned messages back in their queue"
    )
    args = parser.parse_args(argv)
    with open(os.environ["DJANGO_CELERY_UNACKED_CONFIG"], encoding="utf-8") as stream:
        config = json.load(stream)
    nodes = set(config["nodes"])
    # The project's package (the Celery app module) is found from the project directory.
    sys.path.insert(0, os.getcwd())
    from celery.app.utils import find_app
    from kombu.transport.redis import Mutex, MutexHeld

    app = find_app(config["app"])
    with app.connection_for_write() as conn:
        if conn.transport.driver_type != "redis":
            print(f"the broker is {conn.transport.driver_type}, not Redis", file=sys.stderr)
            return 2
        channel = conn.default_channel
        client = channel.client
        now = time.time()
        unacked = client.hlen(channel.unacked_key)
        oldest = client.zrange(channel.unacked_index_key, 0, 0, withscores=True)
        entries = []
        old = client.zrangebyscore(
            channel.unacked_index_key, "-inf", now - config["min_age"], withscores=True
        )
        for tag, delivered in old:
            value = client.hget(channel.unacked_key, tag)
            if value is not None:
                entries.append(Entry(tag, delivered, *task_of(value)))
        found, limited, reclaimed, missing, skipped = [], set(), 0, [], ""
        if entries:
            limited = rate_limited_tasks(app)
            inspect = app.control.inspect(
                timeout=config["inspect_timeout"], connection=conn, limit=len(nodes) or None
            )
            replies = inspect.query_task(*[e.task_id for e in entries]) or {}
            missing = sorted(nodes - set(replies))
            found = orphans(entries, held_task_ids(replies), limited)
            if found and not nodes:
                skipped = "no worker node is expected: nothing to compare with"
            elif found and missing:
                skipped = "not every worker answered: they may still run these tasks"
            elif found and args.reclaim:
                qos = channel.qos
                try:
                    # The lock kombu's own visibility-timeout restore takes.
                    with Mutex(client, qos.unacked_mutex_key, qos.unacked_mutex_expire):
                        for entry in found:
                            # Still the delivery that was read (not acknowledged, not given
                            # back and delivered again meanwhile)? Then put it back at the head
                            # of its queue (kombu's consumers pop from the right).
                            if (
                                client.zscore(channel.unacked_index_key, entry.tag)
                                == entry.delivered
                            ):
                                qos.restore_by_tag(entry.tag, leftmost=False)
                                reclaimed += 1
                except MutexHeld:
                    skipped = "a worker holds kombu's restore lock: next round"
    counts = {
        # Delivered and not acknowledged; the age of the oldest (seconds); of those past the
        # minimum age, the ones no worker holds, the ones never given back (rate limit), the
        # ones given back; expected worker nodes that did not answer, and why none was given back.
        "unacked": unacked,
        "oldest_age_seconds": round(now - oldest[0][1], 1) if oldest else None,
        "older_than_min_age": len(entries),
        "orphaned": len(found),
        "rate_limited": len([e for e in entries if e.task_name in limited]),
        "reclaimed": reclaimed,
        "not_answering": missing,
        "skipped": skipped,
    }
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
