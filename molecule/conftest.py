"""Helpers shared by the testinfra tests of every Molecule scenario.

The scenario's group_vars (what converge was given) are read from Molecule's inventory, so each
test compares the host with the configuration the operator asked for, not with constants.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

NAME = "djangoapp"
MANAGE = f"/usr/local/bin/{NAME}-manage"
CELERY = f"/usr/local/bin/{NAME}-celery"


def scenario_vars() -> dict:
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    merged: dict = {}
    for path in sorted((inventory / "group_vars").glob("*")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


SCENARIO = scenario_vars() if "MOLECULE_INVENTORY_FILE" in os.environ else {}
POOLS = SCENARIO.get("django_celery_worker_pools", [{"name": "default", "queues": ["celery"]}])


@pytest.fixture(scope="session")
def settings() -> dict:
    return SCENARIO


@pytest.fixture(params=POOLS, ids=lambda pool: pool["name"])
def pool(request) -> dict:
    return request.param


def unit_of(pool: dict) -> str:
    return f"{NAME}-worker@{pool['name']}.service"


def run_ok(host, *argv: str) -> str:
    """Run a command on the host and return its stdout; fail the test with its stderr."""
    result = host.run(" ".join(_quote(a) for a in argv))
    assert result.rc == 0, f"{argv} exited {result.rc}: {result.stderr or result.stdout}"
    return result.stdout


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def manage(host, *args: str) -> str:
    return run_ok(host, MANAGE, *args)


def manage_json(host, *args: str):
    return json.loads(manage(host, *args))


def send_task(host, task: str, args: list, queue: str) -> str:
    """Enqueue a task through the broker without waiting for it; return its id."""
    out = run_ok(host, CELERY, "call", task, f"--args={json.dumps(args)}", f"--queue={queue}")
    return out.strip().splitlines()[-1]


def running_conf(host, pool: dict) -> dict:
    """The configuration a running worker node reports, with Django's CELERY_ prefix removed."""
    node = f"{pool['name']}@{host.check_output('hostname')}"
    out = run_ok(host, CELERY, "inspect", "conf", f"--destination={node}", "--json", "--timeout=10")
    conf = json.loads(out)[node]
    return {key.removeprefix("CELERY_").lower(): value for key, value in conf.items()}


def unit_property(host, unit: str, prop: str) -> str:
    return run_ok(host, "systemctl", "show", "--value", f"--property={prop}", unit).strip()


def wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def slow_task_runs(host, prefix: str) -> dict:
    report = manage_json(host, "slow_task_report", f"--prefix={prefix}")
    return report


def unique_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    """Run ansible-playbook from the controller against this scenario's inventory."""
    scenario_dir = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    converge = scenario_dir.parent / "resources" / "converge.yml"
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(converge), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
