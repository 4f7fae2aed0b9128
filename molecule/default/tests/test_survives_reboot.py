"""A clean reboot of the host with work queued: everything comes back by itself and no task is
lost. Destructive: the last module of the scenario (pytest runs modules in alphabetical order).
"""

import subprocess
import time

import pytest
from conftest import (
    NAME,
    POOLS,
    send_slow_tasks,
    unique_id,
    unit_of,
    wait_for,
    wait_for_slow_tasks,
    wait_for_started,
)

TASKS, SECONDS = 6, 3
REDIS_LOG = "/var/log/redis/redis-server.log"
UNITS = ["redis-server.service", f"{NAME}-beat.service", f"{NAME}-web.service"]
UNITS += [unit_of(pool) for pool in POOLS]


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


@pytest.fixture(scope="module")
def reboot(host) -> dict:
    """Queue slow tasks on the slow pool (concurrency 1: one runs, the rest wait), then halt the
    container the way a host is shut down (SIGRTMIN+3 to systemd: an orderly shutdown), start it
    again and wait for systemd to report the boot finished."""
    container = host.backend.host
    log_lines = len(host.file(REDIS_LOG).content_string.splitlines())
    prefix = unique_id("reboot")
    send_slow_tasks(host, prefix, TASKS, SECONDS)
    assert wait_for_started(host, prefix), "no start"
    began = time.monotonic()
    _docker("kill", "--signal=SIGRTMIN+3", container)
    halted = wait_for(
        lambda: _docker("inspect", "--format={{.State.Running}}", container) == "false", 120
    )
    assert halted, "the container did not halt"
    halt_took = time.monotonic() - began
    _docker("start", container)
    state = {}

    def booted() -> bool:
        result = subprocess.run(
            ["docker", "exec", container, "systemctl", "is-system-running"],
            capture_output=True,
            text=True,
            check=False,
        )
        state["value"] = result.stdout.strip()
        return state["value"] in ("running", "degraded")

    wait_for(booted, timeout=120)
    return {
        "prefix": prefix,
        "began": began,
        "halt_took": halt_took,
        "boot_took": time.monotonic() - began,
        "state": state.get("value"),
        "log_lines": log_lines,
    }


def test_host_boots_to_running_after_a_reboot(reboot):
    assert reboot["state"] == "running"


@pytest.mark.parametrize("unit", UNITS)
def test_service_is_active_again_after_a_reboot(host, reboot, unit):
    assert host.service(unit).is_running


def test_no_task_queued_at_a_reboot_is_lost(host, reboot):
    report = wait_for_slow_tasks(host, reboot["prefix"], TASKS, timeout=120)
    print(
        f"reboot: halted in {reboot['halt_took']:.0f} s, booted {reboot['boot_took']:.0f} s "
        f"after the halt signal; {report['completed']}/{TASKS} tasks completed "
        f"{time.monotonic() - reboot['began']:.0f} s after it, started twice: "
        f"{report['started_twice']}"
    )
    assert (report["completed"], report["duplicated"]) == (TASKS, 0), report


def test_redis_replays_its_append_only_file_without_errors_after_a_reboot(host, reboot):
    """NOPERM lines are transactions Redis refused to replay (redis/redis#14541 when the
    default user is switched off): kombu's bookkeeping of the tasks in flight is lost."""
    lines = host.file(REDIS_LOG).content_string.splitlines()[reboot["log_lines"] :]
    bad = [line for line in lines if "NOPERM" in line or "CRITICAL" in line]
    assert any("Ready to accept connections" in line for line in lines), lines[-5:]
    assert bad == [], bad[:5]
