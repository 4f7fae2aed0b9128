"""molecule/conftest.py's playbook_failure(): the first line of a failed playbook test's message
(all that pytest's summary, and so CI's log, shows) names the failed task and its error."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "molecule_conftest", Path(__file__).resolve().parents[1] / "molecule" / "conftest.py"
)
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)

RUN = """PLAY [Deploy] ******
TASK [django_celery : Write the environment file] ******
ok: [web]
TASK [django_celery : Restart the workers] ******
fatal: [web]: FAILED! => {"changed": false, "msg": "Unable to restart service"}
PLAY RECAP ******
"""


def result(returncode: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], returncode, stdout, stderr)


def test_the_first_line_names_the_failed_task_and_its_error():
    first = conftest.playbook_failure(result(2, RUN)).splitlines()[0]
    assert first.startswith("rc=2: TASK [django_celery : Restart the workers]")
    assert "Unable to restart service" in first


def test_ansible_playbooks_own_error_comes_first_when_no_task_failed():
    failure = conftest.playbook_failure(result(1, "", "ERROR! the role 'x' was not found\n"))
    assert failure.splitlines()[0] == "rc=1: ERROR! the role 'x' was not found"


def test_an_ignored_failure_is_not_the_cause():
    ignored = RUN.replace(
        "TASK [django_celery : Restart the workers]",
        "TASK [django_celery : Look at the old node] ******\n"
        'fatal: [web]: UNREACHABLE! => {}\nfatal: [web]: FAILED! => {"msg": "gone"}\n'
        "...ignoring\nTASK [django_celery : Restart the workers]",
    )
    first = conftest.playbook_failure(result(2, ignored)).splitlines()[0]
    assert "Restart the workers" in first and "gone" not in first


def test_a_rescued_failure_gives_way_to_the_rescues_own():
    rescued = RUN.replace(
        "PLAY RECAP",
        "TASK [django_celery : Fail with the journal of the silent pools] ******\n"
        'fatal: [web]: FAILED! => {"msg": "pool default did not answer ping"}\nPLAY RECAP',
    )
    first = conftest.playbook_failure(result(2, rescued)).splitlines()[0]
    assert "did not answer ping" in first


def test_the_output_follows_the_first_line():
    assert "PLAY RECAP" in conftest.playbook_failure(result(2, RUN))
