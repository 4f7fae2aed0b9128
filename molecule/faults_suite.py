"""The fault suite of scripts/faults.py as tests: one per fault row, on this scenario's host.

Each single-host scenario imports it from its tests/test_zzz_faults.py, so that it runs after
every other test (it reboots the host and rolls out a new release). Short form unless
DJANGO_CELERY_FULL=1 (scripts/test --full). The rows are also written as JSON to Molecule's
ephemeral directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import faults  # noqa: E402

FULL = os.environ.get("DJANGO_CELERY_FULL") == "1"
ROWS: list = []


@pytest.fixture(scope="module")
def suite(host):
    release = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(ROOT / "molecule" / "resources" / "converge.yml"),
    ]
    suite = faults.Suite(faults.Host(host.backend.host), FULL, release)
    yield suite
    out = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")) / "faults.json"
    out.write_text(json.dumps([asdict(row) for row in ROWS], indent=1))
    # For the record (the log tests run before the faults): what the broker logged as errors or
    # crashes while its faults were injected.
    logs = (
        "/var/log/rabbitmq/*.log"
        if faults.broker_of(suite.host) == "rabbitmq"
        else "/var/log/redis/*.log"
    )
    found = host.run(
        f"grep -h -i -A3 -e 'crash report' -e crasher -e '\\[error\\]' {logs} | tail -60"
    )
    print(f"broker log after the fault suite ({logs}):\n{found.stdout or 'no error or crash'}")


def run(suite, name: str):
    row = getattr(suite, name)()
    ROWS.append(row)
    print(faults.table([row]))
    assert faults.problems(row) == [], asdict(row)
    return row


def test_no_task_lost_and_the_task_rerun_when_its_pool_process_is_killed(suite):
    row = run(suite, "kill_pool_process")
    assert row.started_twice >= 1, asdict(row)


def test_no_task_lost_when_the_worker_main_process_is_killed(suite):
    """On Redis, the tasks the dead worker held come back through the role's unacked-task
    timer, well before the visibility timeout (an hour by default)."""
    row = run(suite, "kill_main_process")
    if suite.broker == "redis":
        assert suite.reclaim < suite.visibility, "the unacked-task timer is not running"
        assert row.recovery_seconds <= suite.reclaim + 60, asdict(row)


def test_no_task_lost_or_rerun_across_a_warm_worker_restart(suite):
    row = run(suite, "restart_worker")
    assert (row.started_twice, row.ran_twice) == (0, 0), asdict(row)


def test_stop_waits_for_the_running_task_and_loses_none(suite):
    row = run(suite, "stop_worker")
    assert row.started_twice == 0 and row.extra["stop_seconds"] >= 0.5, asdict(row)


def test_no_task_lost_across_a_broker_restart(suite):
    run(suite, "restart_broker")


def test_no_task_lost_across_a_host_reboot_and_every_service_comes_back(suite):
    run(suite, "reboot")


def test_no_task_lost_and_beat_not_doubled_across_a_broker_outage(suite):
    run(suite, "broker_outage")


def test_no_task_lost_across_a_new_release(suite):
    run(suite, "new_release")


def test_beat_does_not_replay_missed_runs_after_being_down(suite):
    run(suite, "beat_down")
