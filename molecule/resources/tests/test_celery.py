"""Celery worker pools under systemd, and real tasks through the broker."""

import json
import time

from conftest import (
    CELERY,
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
    wait_for,
)


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
    pool = _slow_pool(settings)
    task_id = unique_id("restart")
    send_task(host, "demo.tasks.slow", [task_id, 6], queue="slow")
    assert wait_for(lambda: _active_on(host, pool), timeout=30), "the slow task never started"
    run_ok(host, "systemctl", "restart", unit_of(pool))
    report = wait_for(
        lambda: slow_task_runs(host, task_id)["completed"] == 1 and slow_task_runs(host, task_id),
        timeout=90,
        interval=2,
    )
    assert report and report["completed"] == 1 and report["duplicated"] == 0


def test_task_in_flight_survives_its_pool_process_being_killed(host, settings):
    pool = _slow_pool(settings)
    task_id = unique_id("kill")
    send_task(host, "demo.tasks.slow", [task_id, 8], queue="slow")
    assert wait_for(lambda: _active_on(host, pool), timeout=30), "the slow task never started"
    main_pid = unit_property(host, unit_of(pool), "MainPID")
    child = run_ok(host, "ps", "--no-headers", "-o", "pid", "--ppid", main_pid).split()[0]
    run_ok(host, "kill", "-KILL", child)
    report = wait_for(
        lambda: slow_task_runs(host, task_id)["completed"] == 1 and slow_task_runs(host, task_id),
        timeout=120,
        interval=2,
    )
    assert report and report["completed"] == 1


def _active_on(host, pool) -> bool:
    node = f"{pool['name']}@{host.check_output('hostname')}"
    result = host.run(f"{CELERY} inspect active --destination={node} --json --timeout=5")
    if result.rc != 0:
        return False
    time.sleep(1)
    return bool(json.loads(result.stdout).get(node))
