"""Celery worker pools under systemd, and real tasks through the broker."""

import time

from conftest import (
    NAME,
    manage,
    manage_json,
    run_ok,
    running_conf,
    send_task,
    slow_task_runs,
    unique_id,
    unit_of,
    unit_property,
    wait_for_slow_tasks,
    wait_for_started,
)

SLOW_SECONDS = 8
KILLED_TASK_SECONDS = 25


def test_worker_unit_is_active(host, pool):
    assert host.service(unit_of(pool)).is_running


def test_worker_unit_is_enabled_at_boot(host, pool):
    assert host.service(unit_of(pool)).is_enabled


def test_worker_unit_stops_warm_with_killmode_mixed(host, pool):
    assert unit_property(host, unit_of(pool), "KillMode") == "mixed"


def test_worker_stop_timeout_exceeds_the_hard_time_limit(host, pool, settings):
    seconds = _systemd_span(unit_property(host, unit_of(pool), "TimeoutStopUSec"))
    assert seconds > settings.get("django_celery_task_time_limit", 360)


def _systemd_span(text: str) -> float:
    total = 0.0
    for part in text.split():
        for suffix, factor in (("min", 60), ("ms", 0.001), ("us", 1e-6), ("s", 1), ("h", 3600)):
            if part.endswith(suffix):
                total += float(part[: -len(suffix)]) * factor
                break
    return total


def test_worker_runs_as_the_app_user(host, pool):
    assert unit_property(host, unit_of(pool), "User") == NAME


def test_worker_is_sandboxed(host, pool):
    props = {
        p: unit_property(host, unit_of(pool), p)
        for p in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp")
    }
    assert props == {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }


def test_worker_runs_the_configured_concurrency_as_pool_processes(host, pool):
    main_pid = unit_property(host, unit_of(pool), "MainPID")
    children = run_ok(host, "ps", "--no-headers", "-o", "pid", "--ppid", main_pid).split()
    assert len(children) == pool["concurrency"]


def test_running_worker_has_acks_late_and_reject_on_worker_lost(host, pool):
    conf = running_conf(host, pool)
    assert (
        conf["task_acks_late"],
        conf["task_reject_on_worker_lost"],
        conf["worker_prefetch_multiplier"],
    ) == (True, True, 1)


def test_running_worker_retries_the_broker_at_startup(host, pool):
    assert running_conf(host, pool)["broker_connection_retry_on_startup"] is True


def test_task_sent_on_the_host_returns_its_result(host):
    assert manage(host, "run_task", "demo.tasks.add", "16", "16", "--timeout=60").strip() == "32"


def test_each_pool_executes_the_tasks_of_its_queues(host, pool):
    """whoami reports the pid of the process that ran it: a child of this pool's main process."""
    answer = manage_json(
        host, "run_task", "demo.tasks.whoami", f"--queue={pool['queues'][0]}", "--timeout=60"
    )
    parent = run_ok(host, "ps", "--no-headers", "-o", "ppid", "-p", str(answer["pid"])).strip()
    main_pid = unit_property(host, unit_of(pool), "MainPID")
    assert parent == main_pid or str(answer["pid"]) == main_pid


def _slow_pool(settings):
    pools = settings.get("django_celery_worker_pools", [])
    return next(p for p in pools if "slow" in p.get("queues", [])) if pools else None


def test_task_in_flight_survives_a_worker_restart(host, settings):
    """A warm restart lets the running task finish: it runs once, and the restart waits for it.

    A cold stop (the pool processes killed with the main one) would also end with the task
    completed, but only after a second start of the redelivered message: started_twice tells
    the two apart, read after the task's duration and a margin more so a late copy shows too.
    """
    pool = _slow_pool(settings)
    task_id = unique_id("restart")
    sent = time.monotonic()
    send_task(host, "demo.tasks.slow", [task_id, SLOW_SECONDS], queue="slow")
    assert wait_for_started(host, task_id), "never started"
    restarting = time.monotonic()
    run_ok(host, "systemctl", "restart", unit_of(pool))
    restart_took = time.monotonic() - restarting
    wait_for_slow_tasks(host, task_id, 1, timeout=90)
    time.sleep(SLOW_SECONDS + 4)
    report = slow_task_runs(host, task_id)
    counts = {k: report[k] for k in ("started", "started_twice", "completed", "duplicated")}
    assert counts == {"started": 1, "started_twice": 0, "completed": 1, "duplicated": 0}
    # The task started after it was sent, so it still had at least this long to run.
    remaining = SLOW_SECONDS - (restarting - sent)
    assert restart_took >= remaining, f"restart took {restart_took:.1f} s < {remaining:.1f} s"


def test_task_in_flight_survives_its_pool_process_being_killed(host, settings):
    """The killed process's task is redelivered and run again: two starts, one completion.

    The task runs KILLED_TASK_SECONDS, long enough that a loaded CI machine (a manage command
    takes seconds there) still finds it running when the kill comes; the report read after the
    kill proves it had not finished, so a kill that came too late fails as such.
    """
    pool = _slow_pool(settings)
    task_id = unique_id("kill")
    send_task(host, "demo.tasks.slow", [task_id, KILLED_TASK_SECONDS], queue="slow")
    assert wait_for_started(host, task_id), "never started"
    main_pid = unit_property(host, unit_of(pool), "MainPID")
    child = run_ok(host, "ps", "--no-headers", "-o", "pid", "--ppid", main_pid).split()[0]
    run_ok(host, "kill", "-KILL", child)
    assert slow_task_runs(host, task_id)["completed"] == 0, "the task ended before the kill"
    report = wait_for_slow_tasks(host, task_id, 1, timeout=2 * KILLED_TASK_SECONDS + 60)
    counts = {k: report[k] for k in ("started_twice", "completed", "duplicated")}
    assert counts == {"started_twice": 1, "completed": 1, "duplicated": 0}
