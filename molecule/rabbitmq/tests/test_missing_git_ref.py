"""A git ref that does not exist: the run fails naming it, and the running release keeps
serving (current, the project's configuration files and its units as they were; a task still
goes through)."""

import json

import pytest
from conftest import add_on_the_host, ansible_playbook
from rabbitmq_helpers import host_state

MISSING_REF = "no-such-ref-anywhere"


@pytest.fixture(scope="module")
def missing_ref_run(host):
    before = host_state(host)
    extra = {"django_celery_git_version": MISSING_REF, "django_celery_release": "missing-ref"}
    result = ansible_playbook("-e", json.dumps(extra))
    return {"result": result, "before": before, "after": host_state(host)}


def test_a_missing_git_ref_fails_the_run_naming_the_ref(missing_ref_run):
    result = missing_ref_run["result"]
    assert result.returncode != 0
    assert MISSING_REF in result.stdout + result.stderr


def test_a_missing_git_ref_leaves_current_the_configuration_and_the_units_as_they_were(
    missing_ref_run,
):
    assert missing_ref_run["after"] == missing_ref_run["before"]


def test_after_a_missing_git_ref_the_running_release_still_runs_tasks(host, missing_ref_run):
    assert add_on_the_host(host, 40, 2) == 42
