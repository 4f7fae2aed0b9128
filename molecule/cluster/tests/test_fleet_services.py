"""The fleet's services: enabled for boot where they belong, work spread over both worker
hosts, exactly one beat (at the rate of one scheduler), gunicorn healthy with PostgreSQL and
the remote broker."""

from __future__ import annotations

import json
import shlex
import time
from datetime import datetime

import pytest
from fleet import (
    APP_HOSTS,
    BEAT_HOST,
    BROKER,
    INVENTORY,
    NAME,
    WEB,
    WORKER_HOSTS,
    group_vars,
    node,
    pools,
    shell,
)

testinfra_hosts = [f"ansible://{WEB}"]

HEALTH = """
import json, sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen('http://127.0.0.1:8000/health/', timeout=20)
except urllib.error.HTTPError as exc:
    r = exc
print(r.status, r.read().decode())
"""


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


def test_tasks_sent_from_web_run_on_both_worker_hosts(host):
    """Twelve 1-second tasks on the slow queue: one host's two processes (prefetch 1) cannot
    hold them all, so both hosts must run some; each completion records its host."""
    prefix = f"spread-{time.strftime('%H%M%S')}"
    code = (
        "import json; from proj.celery import app; from demo.models import SlowTaskCompletion; "
        f"rs = [app.send_task('demo.tasks.slow', args=['{prefix}-%d' % i, 1], queue='slow') "
        "for i in range(12)]; [r.get(timeout=120) for r in rs]; "
        f"rows = SlowTaskCompletion.objects.filter(task_id__startswith='{prefix}-'); "
        "print(json.dumps(sorted(set(rows.values_list('hostname', flat=True)))))"
    )
    assert json.loads(shell(host, code)) == sorted(WORKER_HOSTS.values())


def test_exactly_one_beat_runs_in_the_fleet():
    active = [
        name
        for name in APP_HOSTS + [BROKER]
        if node(name).run(f"systemctl is-active {NAME}-beat.service").stdout.strip() == "active"
    ]
    assert active == [BEAT_HOST]


def test_beat_heartbeat_advances_at_the_rate_of_one_scheduler(host):
    """Over ~30 s the heartbeat's count must rise by (time between its first and last run in
    the window) / CELERY_HEARTBEAT_INTERVAL, within one: a second scheduler anywhere in the
    fleet (a second beat unit, a worker started with -B) doubles it."""
    interval = float(group_vars()["django_celery_extra_env"]["CELERY_HEARTBEAT_INTERVAL"])

    def status():
        report = json.loads(host.check_output(f"{NAME}-manage heartbeat_status"))
        return report["count"], datetime.fromisoformat(report["last_run"]).timestamp()

    count_before, last_before = status()
    time.sleep(6 * interval)
    count_after, last_after = status()
    runs, span = count_after - count_before, last_after - last_before
    expected = span / interval
    print(f"heartbeat: {runs} runs in {span:.1f} s (one scheduler: {expected:.1f})")
    assert span >= 4 * interval, (runs, span)
    assert abs(runs - expected) <= 1, (runs, span)


def test_web_unit_is_enabled_on_the_web_host(host):
    assert host.service(f"{NAME}-web.service").is_enabled


def test_health_on_the_web_host_answers_200_with_nothing_failed(host):
    """In the fleet /health/ checks PostgreSQL on the broker host, the remote Redis, the
    workers of both worker hosts and the heartbeat written by the beat host."""
    status, body = host.check_output(f"python3 -c {shlex.quote(HEALTH)}").split(" ", 1)
    report = json.loads(body)
    assert (status, report["failed"]) == ("200", []), body


@pytest.mark.parametrize("name", sorted(WORKER_HOSTS))
def test_worker_units_are_enabled_on_each_worker_host(name):
    worker = node(name)
    enabled = {pool: worker.service(f"{NAME}-worker@{pool}.service").is_enabled for pool in pools()}
    assert enabled == dict.fromkeys(pools(), True)


def test_beat_is_enabled_on_the_beat_host_only():
    enabled = [
        name
        for name in APP_HOSTS + [BROKER]
        if node(name).run(f"systemctl is-enabled {NAME}-beat.service").stdout.strip() == "enabled"
    ]
    assert enabled == [BEAT_HOST]
