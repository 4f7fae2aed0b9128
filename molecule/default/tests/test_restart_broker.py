"""Tasks survive a Redis restart: the queue persists (AOF), and tasks a worker held when the
broker went away are delivered again. Destructive: runs after the non-destructive modules."""

import time

from conftest import (
    redis_cli,
    run_ok,
    send_slow_tasks,
    slow_task_runs,
    unique_id,
    unit_of,
    wait_for,
    wait_for_slow_tasks,
    wait_for_started,
)

REDIS = "redis-server.service"
QUEUED = 3
# What could still hold a task: the slow queue, and Redis's set of delivered, unacked tasks.
PENDING = [("LLEN", "slow"), ("HLEN", "unacked")]


def _slow_pool(settings) -> dict:
    return next(p for p in settings["django_celery_worker_pools"] if "slow" in p["queues"])


def test_queued_tasks_survive_a_broker_restart(host, settings):
    """With the slow pool stopped, tasks wait in the queue; Redis restarts; the queue still
    holds every one of them, and the pool runs them all once started again."""
    unit = unit_of(_slow_pool(settings))
    prefix = unique_id("queued")
    run_ok(host, "systemctl", "stop", unit)
    try:
        send_slow_tasks(host, prefix, QUEUED, 1)
        before = redis_cli(host, "LLEN", "slow").stdout.strip()
        run_ok(host, "systemctl", "restart", REDIS)
        after = redis_cli(host, "LLEN", "slow").stdout.strip()
    finally:
        run_ok(host, "systemctl", "start", unit)
    report = wait_for_slow_tasks(host, prefix, QUEUED, timeout=90)
    print(f"queued across a Redis restart: {report}")
    assert (before, after) == (str(QUEUED), str(QUEUED))
    assert (report["completed"], report["duplicated"]) == (QUEUED, 0), report


def test_tasks_in_flight_survive_a_broker_restart(host, settings):
    """Redis restarts while the slow pool runs a task and more wait: every task completes.

    Waits until every task completed, or until nothing is left that could still run one (the
    slow queue and Redis's unacknowledged set both empty, twice in a row): a task lost that way
    is never coming back. Prints how long recovery took and how many tasks started twice.
    """
    prefix = unique_id("inflight")
    count, duration = 3, 4
    send_slow_tasks(host, prefix, count, duration)
    assert wait_for_started(host, prefix), "no start"
    restarted = time.monotonic()
    run_ok(host, "systemctl", "restart", REDIS)
    report: dict = {}
    idle = []

    def settled() -> bool:
        report.update(slow_task_runs(host, prefix))
        pending = [redis_cli(host, cmd, key).stdout.strip() for cmd, key in PENDING]
        idle.append(pending == ["0", "0"])
        return report["completed"] == count or idle[-2:] == [True, True]

    wait_for(settled, timeout=180, interval=2)
    took = time.monotonic() - restarted
    print(
        f"in flight across a Redis restart: {report['completed']}/{count} completed, settled "
        f"{took:.0f} s after the restart, started twice: {report['started_twice']}"
    )
    # At least once: the task running when Redis went away may run again (the deploy settings
    # say so: it finishes and acknowledges over the new connection, and kombu may already have
    # put it back). Seen once in CI on 2026-12-07 (started twice 1, ran twice 1); never more
    # than the tasks the pool was running.
    running = int(_slow_pool(settings).get("concurrency", 1))
    assert report["completed"] == count, report
    assert report["duplicated"] <= running, report
