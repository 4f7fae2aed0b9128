"""Bad input against the converged host: each run fails in validation with a message naming the
variable, reports changed=0, and the host is as it was: the checksums of every file under
/etc/NAME and /etc/redis, the current link, the state and main PID of every unit of the
project, and a task round trip before and after.

tests/test_validation.py runs many more bad inputs against hosts that cannot be reached (so a
task touching one would fail as unreachable); this table runs a spread of them (types, choices,
contradictions, characters, and checks that read the host) against a real one.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    NAME,
    add_on_the_host,
    ansible_playbook,
    configuration_checksums,
    unit_states,
)

RESOURCES = Path(__file__).resolve().parents[2] / "resources"

CASES = {
    "unknown_broker": (
        {"django_celery_broker": "kafka"},
        r"django_celery_broker.*must be one of: redis, rabbitmq, external",
    ),
    "pool_concurrency_not_a_number": (
        {"django_celery_worker_pools": [{"name": "default", "concurrency": "many"}]},
        r"argument 'concurrency' is of type str found in 'django_celery_worker_pools'",
    ),
    "redis_port_not_a_number": (
        {"django_celery_redis_port": "six"},
        r"argument 'django_celery_redis_port' is of type str and we were unable to convert to int",
    ),
    "visibility_timeout_below_the_scenarios_hard_limit": (
        {"django_celery_visibility_timeout": 30},
        r"django_celery_visibility_timeout \(30 s\) must be greater than "
        r"django_celery_task_time_limit \(60 s\)",
    ),
    "soft_time_limit_above_hard": (
        {"django_celery_task_soft_time_limit": 70},
        r"django_celery_task_soft_time_limit \(70\) must be lower than",
    ),
    "duplicate_pool_names": (
        {"django_celery_worker_pools": [{"name": "io"}, {"name": "io"}]},
        r"pool names must be unique\s+\(duplicates: io\)",
    ),
    "secret_key_of_spaces": (
        {"django_celery_secret_key": " " * 60},
        r"django_celery_secret_key must be at least 50 characters, not only spaces",
    ),
    "web_bind_not_an_address": (
        {"django_celery_web_bind": "not-an-address"},
        r"django_celery_web_bind \(\"not-an-address\"\) must be HOST:PORT",
    ),
    "extra_env_name_with_a_space_and_value_with_a_newline": (
        {"django_celery_extra_env": {"A B": "1", "BANNER": "one\ntwo"}},
        r"names must be .* \(bad: \[\"A B\"\]\); values must be on one line "
        r"\(with a newline: \[\"BANNER\"\]\)",
    ),
    "broker_password_with_a_newline": (
        {"django_celery_broker_password": "it's $ok\nnot this"},
        r"django_celery_broker_password must be on one line",
    ),
    "deployment_name_with_a_space": (
        {"django_celery_name": "my shop"},
        r"django_celery_name 'my shop' is not usable as a user and unit name",
    ),
    "release_name_with_a_slash": (
        {"django_celery_release": "../2"},
        r"django_celery_release a plain name",
    ),
    "allowed_host_with_a_quote": (
        {"django_celery_allowed_hosts": ['shop"example.com']},
        r"django_celery_allowed_hosts entries must be host names",
    ),
    # Read from the host: its Python (3.11 on Debian 12) against the Django 6 the requirements pin.
    "django_6_project_on_python_3_11": (
        {"django_celery_source_path": str(RESOURCES / "django6")},
        r"djangoapp needs Python 3.12 or newer \(Django==6.0.1 in requirements/base.txt\), but "
        r"\S+ has Python 3.11",
    ),
    # Read from the host: the main Redis serves the sample app, whose user name this one takes.
    "another_project_on_the_main_redis_with_the_same_user_name": (
        {
            "django_celery_name": "blog",
            "django_celery_broker_user": NAME,
            "django_celery_web_bind": "127.0.0.1:8003",
        },
        r"redis-server on this host\s+already serves another project .*"
        r"/etc/redis/redis.conf was written for another project",
    ),
    # Read from the host: another project's Redis instance already has this port.
    "redis_instance_on_a_port_another_project_uses": (
        {
            "django_celery_name": "blog",
            "django_celery_redis_instance": "blog",
            "django_celery_redis_port": 6381,
            "django_celery_web_bind": "127.0.0.1:8003",
        },
        r"django_celery_redis_port 6381 is already the port of /etc/redis/redis-twin.conf",
    ),
}


def host_state(host) -> dict:
    """What a run that changes nothing leaves exactly as it was."""
    units = unit_states(host, f"{NAME}-*")
    return {
        "files": configuration_checksums(host, f"/etc/{NAME}", "/etc/redis"),
        "current": host.file(f"/srv/{NAME}/current").linked_to,
        # The unacked-task timer and its oneshot service change state every round: left out.
        "units": {unit: state for unit, state in units.items() if "-unacked." not in unit},
    }


def round_trip(host) -> int:
    return add_on_the_host(host, 21, 21)


@pytest.fixture(scope="module")
def invalid_runs(host) -> dict:
    """Every case, two at a time; the host's state before the first and after each."""
    before = host_state(host)
    task_before = round_trip(host)

    def run(case: str):
        result = ansible_playbook("-e", json.dumps(CASES[case][0]))
        return case, result, host_state(host)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {case: (result, state) for case, result, state in pool.map(run, sorted(CASES))}
    return {
        "before": before,
        "task_before": task_before,
        "runs": runs,
        "task_after": round_trip(host),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_invalid_input_fails_naming_the_variable_and_changes_nothing(invalid_runs, case):
    result, _ = invalid_runs["runs"][case]
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert re.search(CASES[case][1], output, re.S), output[-3000:]
    assert re.findall(r"changed=(\d+)", result.stdout) == ["0"], result.stdout[-2000:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_invalid_input_leaves_the_hosts_files_link_and_units_as_they_were(invalid_runs, case):
    _, state = invalid_runs["runs"][case]
    assert state == invalid_runs["before"]


def test_after_the_invalid_inputs_a_task_still_goes_through(invalid_runs):
    assert (invalid_runs["task_before"], invalid_runs["task_after"]) == (42, 42)
