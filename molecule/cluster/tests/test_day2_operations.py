"""The day-2 playbooks on the fleet, as an operator runs them (README, "Day-2 operations"):
restart_workers restarts the pools one worker host at a time and loses no task in flight; drain
takes one worker host out of service while the other keeps working, a rolling restart leaves it
out, and resume brings it back. (The single-host forms, and rollback, rotate_secrets and
remove_project, run in tests/collection against the installed collection.)
"""

from __future__ import annotations

import pytest
from conftest import playbook_failure
from fleet import (
    BEAT_HOST,
    WEB,
    WORKER_HOSTS,
    node,
    playbook,
    pools,
    recap,
    run_id,
    services_snapshot,
    shell,
    slow_task_report,
)

testinfra_hosts = [f"ansible://{WEB}"]

DRAINED = "dc-cluster-worker2"
SERVING = "dc-cluster-worker1"


def pool_units() -> list[str]:
    return [f"djangoapp-worker@{pool}.service" for pool in pools()]


def unit_states(name: str) -> dict[str, tuple[str, str]]:
    host = node(name)
    return {
        unit: (
            host.check_output(f"systemctl show --value --property=ActiveState {unit}"),
            host.check_output(f"systemctl show --value --property=UnitFileState {unit}"),
        )
        for unit in pool_units()
    }


def send_slow(prefix: str, count: int, seconds: float) -> None:
    shell(
        node(WEB),
        "from demo.tasks import slow\n"
        f"for i in range({count}): slow.apply_async(args=['{prefix}-%d' % i, {seconds}], "
        "queue='slow')\nprint('sent')",
    )


def worker_snapshot() -> dict:
    snapshot = services_snapshot()
    return {name: snapshot[name] for name in WORKER_HOSTS}


@pytest.fixture(scope="module")
def restarted():
    prefix = f"restart-{run_id()}"
    before = worker_snapshot()
    # Four 8 s tasks on the two hosts' slow pools (two processes each): some are running on
    # each host when its turn comes.
    send_slow(prefix, 4, 8)
    running = slow_task_report(node(WEB), prefix, "started=4", 30)
    assert running["reached"], running
    result = playbook("playbooks/restart_workers.yml")
    after = worker_snapshot()
    slow_task_report(node(WEB), prefix, "completed=4", 60)
    return {
        "result": result,
        "before": before,
        "after": after,
        "report": slow_task_report(node(WEB), prefix),
    }


def test_restart_workers_succeeds(restarted):
    assert restarted["result"].returncode == 0, playbook_failure(restarted["result"])


def test_restart_workers_gives_every_pool_of_every_worker_host_a_new_process(restarted):
    stale = [
        f"{unit}@{name}"
        for name, units in restarted["after"].items()
        for unit, state in units.items()
        if unit in pool_units() and state["pid"] in (0, restarted["before"][name][unit]["pid"])
    ]
    assert stale == []


def test_restart_workers_leaves_beat_running(restarted):
    beat = "djangoapp-beat.service"
    before, after = restarted["before"][BEAT_HOST][beat], restarted["after"][BEAT_HOST][beat]
    assert after["pid"] == before["pid"] != 0


def test_restart_workers_restarts_one_worker_host_at_a_time(restarted):
    """Every pool of the first host is back before any pool of the second one restarts."""
    starts = {
        name: sorted(state["started"] for unit, state in units.items() if unit in pool_units())
        for name, units in restarted["after"].items()
    }
    first, second = sorted(starts.values(), key=lambda times: times[0])
    assert first[-1] < second[0], starts


def test_restart_workers_lets_every_task_in_flight_finish_once(restarted):
    report = restarted["report"]
    assert (report["completed"], report["started_twice"], report["duplicated"]) == (4, 0, 0)


def test_restart_workers_changes_nothing_on_the_web_and_broker_hosts(restarted):
    changed = {
        name: counts["changed"] for name, counts in recap(restarted["result"].stdout).items()
    }
    assert (changed[WEB], changed["dc-cluster-broker"]) == (0, 0), changed


@pytest.fixture(scope="module")
def drained(restarted):
    run = run_id()
    prefix = f"drain-{run}-flight"
    send_slow(prefix, 2, 6)
    running = slow_task_report(node(WEB), prefix, "started=2", 30)
    assert running["reached"], running
    result = playbook("playbooks/drain.yml", "-e", f"django_celery_drain_hosts={DRAINED}")
    states = {name: unit_states(name) for name in WORKER_HOSTS}
    # Sent while the host is drained: the other worker host runs them.
    during = f"drain-{run}-during"
    send_slow(during, 4, 0.5)
    done = slow_task_report(node(WEB), during, "completed=4", 60)["reached"]
    restart = playbook("playbooks/restart_workers.yml")
    return {
        "result": result,
        "states": states,
        "in_flight": slow_task_report(node(WEB), prefix),
        "done_while_drained": done,
        "during": slow_task_report(node(WEB), during),
        "restart": restart,
        "after_restart": unit_states(DRAINED),
    }


def test_drain_succeeds_and_reports_the_host_drained(drained):
    assert drained["result"].returncode == 0, playbook_failure(drained["result"])
    assert f"{DRAINED} drained:" in drained["result"].stdout


def test_drain_stops_and_disables_the_pools_of_the_named_host_only(drained):
    assert drained["states"] == {
        DRAINED: dict.fromkeys(pool_units(), ("inactive", "disabled")),
        SERVING: dict.fromkeys(pool_units(), ("active", "enabled")),
    }


def test_drain_lets_the_tasks_in_flight_finish_once(drained):
    report = drained["in_flight"]
    assert (report["completed"], report["started_twice"]) == (2, 0), report


def test_while_one_host_is_drained_the_other_runs_the_new_tasks(drained):
    assert drained["done_while_drained"], drained["during"]
    assert drained["during"]["hosts"] == [WORKER_HOSTS[SERVING]], drained["during"]


def test_a_rolling_restart_leaves_the_drained_host_drained(drained):
    assert drained["restart"].returncode == 0, playbook_failure(drained["restart"])
    assert drained["after_restart"] == dict.fromkeys(pool_units(), ("inactive", "disabled"))


@pytest.fixture(scope="module")
def resumed(drained):
    result = playbook("playbooks/resume.yml")
    return {"result": result, "states": {name: unit_states(name) for name in WORKER_HOSTS}}


def test_resume_brings_the_drained_pools_back_started_and_enabled(resumed):
    assert resumed["result"].returncode == 0, playbook_failure(resumed["result"])
    assert resumed["states"] == {
        name: dict.fromkeys(pool_units(), ("active", "enabled")) for name in WORKER_HOSTS
    }


def test_after_resume_the_resumed_host_answers_ping(resumed):
    node_name = f"slow@{WORKER_HOSTS[DRAINED]}"
    out = node(WEB).check_output(
        f"djangoapp-celery inspect ping --destination={node_name} --timeout=10"
    )
    assert "pong" in out, out
