"""A worker host rebooted cleanly with a backlog of slow tasks queued: its services come back
by themselves and no queued task is lost. One reboot (of the beat host, which runs the most
services), shared by the tests below."""

from __future__ import annotations

import json
import shlex
import time

import pytest
from fleet import (
    BEAT_HOST,
    INVENTORY,
    NAME,
    WEB,
    app_units,
    docker,
    node,
    run_id,
    slow_task_report,
    wait_until,
)

testinfra_hosts = [f"ansible://{WEB}"]

TASKS, DURATION = 8, 2


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


@pytest.fixture(scope="module")
def reboot():
    """Queue TASKS slow tasks from the web host, halt the beat host the way systemd halts
    (SIGRTMIN+3 to its PID 1: an orderly shutdown), start it again, wait for it to boot."""
    web = node(WEB)
    prefix = f"reboot-{run_id()}-"
    code = (
        "from proj.celery import app; "
        f"[app.send_task('demo.tasks.slow', args=['{prefix}%d' % i, {DURATION}], queue='slow') "
        f"for i in range({TASKS})]"
    )
    web.check_output(f"{NAME}-manage shell -c {shlex.quote(code)}")
    address = docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", BEAT_HOST
    )
    began = time.monotonic()
    docker("kill", "--signal=SIGRTMIN+3", BEAT_HOST)
    stopped = wait_until(
        lambda: docker("inspect", "-f", "{{.State.Running}}", BEAT_HOST) == "false", 120
    )
    assert stopped, f"{BEAT_HOST} did not halt"
    halted = time.monotonic() - began
    docker("start", BEAT_HOST)
    booted = wait_until(
        lambda: (
            node(BEAT_HOST).run("systemctl is-system-running").stdout.strip()
            in ("running", "degraded")
        ),
        180,
        interval=2,
    )
    assert booted, node(BEAT_HOST).run("systemctl --failed --no-pager").stdout
    assert (
        docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", BEAT_HOST
        )
        == address
    ), "the host came back with another address"
    return {"prefix": prefix, "began": began, "halted": halted, "boot": time.monotonic() - began}


def test_every_service_of_a_rebooted_worker_host_comes_back_by_itself(reboot):
    """Each unit is active again and each worker pool answers ping, with no help."""
    host = node(BEAT_HOST)
    units = app_units(BEAT_HOST)
    hostname = host.check_output("hostname")
    nodes = {f"{u.split('@')[1].removesuffix('.service')}@{hostname}" for u in units if "@" in u}

    def state():
        active = {unit: host.run(f"systemctl is-active {unit}").stdout.strip() for unit in units}
        pings = host.run(f"{NAME}-celery inspect ping --timeout=5 --json").stdout
        answered = set(json.loads(pings)) if pings.startswith("{") else set()
        return active, sorted(nodes - answered)

    back = wait_until(lambda: state() == (dict.fromkeys(units, "active"), []), 120, interval=2)
    recovered = time.monotonic() - reboot["began"]
    print(
        f"reboot of {BEAT_HOST}: halted in {reboot['halted']:.0f} s, booted after "
        f"{reboot['boot']:.0f} s, every service active and answering after {recovered:.0f} s"
    )
    assert back, state()


def test_tasks_queued_across_a_worker_host_reboot_all_complete_once(reboot):
    web = node(WEB)
    prefix = reboot["prefix"]
    slow_task_report(web, prefix, f"completed={TASKS}", 180)
    report = slow_task_report(web, prefix)
    print(
        f"tasks queued across the reboot: {TASKS}, completed {report['completed']}, started twice "
        f"{report['started_twice']}, completed twice {report['duplicated']}"
    )
    assert sorted(report["ids"]) == sorted(f"{prefix}{i}" for i in range(TASKS))
    assert (report["started_twice"], report["duplicated"]) == (0, 0)
