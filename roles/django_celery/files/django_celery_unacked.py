"""Report, and give back, the Redis broker's messages that no live worker holds.

With acks_late, Redis keeps every delivered message in kombu's `unacked` hash until the worker
acknowledges it. When a worker's main process dies (SIGKILL, OOM killer), nobody will ever
acknowledge its running and reserved tasks: Redis hands them out again only when the
visibility timeout expires (an hour by default), and nothing shows they wait.

This command (installed by the role on the beat host, run by a timer and by operators) reads
the `unacked` entries older than a minimum age, asks every worker of the fleet which tasks it
holds (`inspect active`, `reserved` and `scheduled`), and counts as orphaned the entries no
worker holds. With --reclaim it puts them back at the head of their queue, in kombu's own
transaction (the one kombu's visibility timeout uses), but only when every expected worker
node answered: a worker that does not answer (busy, in warm shutdown, its host down) may still
be running those tasks, and then the visibility timeout stays the only way back.

Configuration: a JSON file (DJANGO_CELERY_UNACKED_CONFIG) with the Celery app module, the
expected worker nodes, the minimum age in seconds and the inspect timeout.
Output: one JSON line (see report()).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping


def held_task_ids(*replies: Mapping[str, list]) -> set[str]:
    """Task ids the workers hold, from the replies of inspect active, reserved and scheduled
    ({node: [request, ...]}; a scheduled entry wraps its request)."""
    held = set()
    for reply in replies:
        for requests in (reply or {}).values():
            for request in requests or []:
                request = request.get("request", request)
                if request.get("id"):
                    held.add(request["id"])
    return held


def answering_nodes(*replies: Mapping[str, list]) -> set[str]:
    """The nodes that answered every one of the inspect calls."""
    sets = [set(reply or {}) for reply in replies]
    return set.intersection(*sets) if sets else set()


def task_id(entry: str | bytes) -> str:
    """The task id of a kombu `unacked` hash value: JSON [message, exchange, routing key]."""
    message = json.loads(entry)[0]
    return message.get("headers", {}).get("id") or message.get("properties", {}).get(
        "correlation_id", ""
    )


def orphans(entries: Iterable[tuple[str, str]], held: set[str]) -> list[str]:
    """The delivery tags, of (tag, task id) entries, whose task no worker holds."""
    return [tag for tag, task in entries if task not in held]


def report(
    unacked: int,
    oldest_age: float | None,
    old: int,
    orphaned: int,
    reclaimed: int,
    missing: list[str],
    skipped: str,
) -> dict:
    return {
        # Messages delivered and not yet acknowledged, and the age of the oldest (seconds).
        "unacked": unacked,
        "oldest_age_seconds": oldest_age,
        # Entries older than the minimum age, and those of them no live worker holds.
        "older_than_min_age": old,
        "orphaned": orphaned,
        "reclaimed": reclaimed,
        # Expected worker nodes that did not answer, and why orphans were not given back.
        "not_answering": missing,
        "skipped": skipped,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reclaim", action="store_true", help="put orphaned messages back in their queue"
    )
    args = parser.parse_args(argv)
    with open(os.environ["DJANGO_CELERY_UNACKED_CONFIG"], encoding="utf-8") as stream:
        config = json.load(stream)
    # The project's package (the Celery app module) is found from the project directory.
    sys.path.insert(0, os.getcwd())
    from celery.app.utils import find_app
    from kombu.transport.redis import Mutex, MutexHeld

    app = find_app(config["app"])
    with app.connection_for_write() as conn:
        if conn.transport.driver_type != "redis":
            print(
                f"the broker is {conn.transport.driver_type}, not Redis: nothing to do",
                file=sys.stderr,
            )
            return 2
        channel = conn.default_channel
        client = channel.client
        now = time.time()
        unacked = client.hlen(channel.unacked_key)
        oldest = client.zrange(channel.unacked_index_key, 0, 0, withscores=True)
        oldest_age = round(now - oldest[0][1], 1) if oldest else None
        old_tags = [
            tag
            for tag, _ in client.zrangebyscore(
                channel.unacked_index_key, "-inf", now - config["min_age"], withscores=True
            )
        ]
        entries = []
        for tag in old_tags:
            value = client.hget(channel.unacked_key, tag)
            if value is not None:
                entries.append((tag, task_id(value)))
        found, reclaimed, missing, skipped = [], 0, [], ""
        if entries:
            inspect = app.control.inspect(timeout=config["inspect_timeout"], connection=conn)
            replies = (inspect.active(), inspect.reserved(), inspect.scheduled())
            missing = sorted(set(config["nodes"]) - answering_nodes(*replies))
            found = orphans(entries, held_task_ids(*replies))
            if missing and found:
                skipped = "not every worker answered: they may still run these tasks"
            if args.reclaim and found and not missing:
                qos = channel.qos
                # The lock kombu's own visibility-timeout restore takes.
                try:
                    with Mutex(client, qos.unacked_mutex_key, qos.unacked_mutex_expire):
                        for tag in found:
                            # One transaction per tag (WATCH on the hash): an entry acknowledged
                            # meanwhile is gone, and nothing is put back.
                            if client.hexists(channel.unacked_key, tag):
                                qos.restore_by_tag(tag, leftmost=True)
                                reclaimed += 1
                except MutexHeld:
                    # A worker is restoring expired messages itself: try again next round.
                    skipped = "a worker holds kombu's restore lock: next round"
    print(
        json.dumps(
            report(unacked, oldest_age, len(entries), len(found), reclaimed, missing, skipped)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
