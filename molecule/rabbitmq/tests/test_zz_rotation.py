"""Rotating the RabbitMQ password (README: "password changes really applied", "no connection
refused"): RabbitMQ holds one password per user, so a new django_celery_broker_password goes to
the user's other login (djangoapp_alt) while the one the services ran with keeps working until
they have all restarted; playbooks/rotate_secrets.yml then removes it. A second rotation, back
to the generated password, goes back to the first login.

Runs last (molecule passes the files sorted by path, the shared tests first): it converges the
host three times and restarts every service. The last rotation restores the generated password
on the user's own login, so the host ends as converge left it.
"""

import json
import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import (
    NAME,
    POOLS,
    SCENARIO,
    ansible_playbook,
    manage,
    playbook_failure,
    start_old_login_loop,
    stop_old_login_loop,
    unit_of,
    unit_property,
)
from rabbitmq_helpers import broker_password, broker_url, connect

ROTATE_SECRETS = "playbooks/rotate_secrets.yml"


def generated_password() -> str:
    inventory_dir = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    # The password lookup may append " salt=..." to the file.
    return (inventory_dir / ".secrets/djangoapp/broker_password").read_text().split()[0]


def main_pids(host) -> dict:
    return {pool["name"]: unit_property(host, unit_of(pool), "MainPID") for pool in POOLS}


def process_env(host, pid: str) -> str:
    return host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")


def rotate(host, *args: str) -> dict:
    """rotate_secrets.yml (the rollout, then the play that retires the login no service runs
    with any more)."""
    before = {"url": broker_url(host), "pids": main_pids(host)}
    result = ansible_playbook(*args, playbook=ROTATE_SECRETS)
    return {"result": result, "before": before, "url": broker_url(host), "pids": main_pids(host)}


def rotate_watched(host, *args: str) -> dict:
    """The rollout alone first (site.yml, the plays rotate_secrets.yml starts with) while a
    process holding the old credentials keeps opening broker connections, then rotate()."""
    label = f"old-login-{secrets.token_hex(4)}"
    before = {"url": broker_url(host), "pids": main_pids(host)}
    start_old_login_loop(host, label)
    rollout = ansible_playbook(*args, playbook="site.yml")
    old_login = stop_old_login_loop(host, label)
    run = rotate(host, *args)
    run["before"] = before  # what ran before the rollout, not between its two runs
    return {**run, "rollout": rollout, "old_login": old_login}


def play_output(run: dict, key: str = "result") -> str:
    return playbook_failure(run[key])


# Characters that need quoting or encoding somewhere on their way (URL, environment file read by
# systemd and by sh, Python): they must arrive exactly.
SPECIAL = 'it\'s "quoted" $HOME #hash \\back %p @:/ two  spaces é ü 日本'
ROUND_TRIP = "ROUND_TRIP_VALUE"


@pytest.fixture(scope="module")
def rotated(host):
    """A new password made of the special characters above (and random ones), and an extra
    environment variable holding them."""
    new = secrets.token_urlsafe(12) + SPECIAL
    extra_env = {**SCENARIO.get("django_celery_extra_env", {}), ROUND_TRIP: SPECIAL}
    extra = {"django_celery_broker_password": new, "django_celery_extra_env": extra_env}
    run = rotate_watched(host, "-e", json.dumps(extra))
    run["password"] = new
    return run


@pytest.fixture(scope="module")
def rotated_back(host, rotated):
    run = rotate(host)
    run["password"] = generated_password()
    return run


def test_rotation_rollout_succeeds(rotated):
    returncode = rotated["rollout"].returncode  # not the command line: it holds the password
    assert returncode == 0, play_output(rotated, "rollout")


def test_rotate_secrets_succeeds(rotated):
    returncode = rotated["result"].returncode
    assert returncode == 0, play_output(rotated)


def test_a_value_with_quotes_dollars_hashes_and_non_ascii_reaches_the_running_worker_exactly(
    host, rotated
):
    pid = rotated["pids"][POOLS[0]["name"]]
    values = dict(line.split("=", 1) for line in process_env(host, pid).splitlines() if "=" in line)
    assert values.get(ROUND_TRIP) == SPECIAL


def test_a_value_with_quotes_dollars_hashes_and_non_ascii_reaches_manage_py_exactly(host, rotated):
    code = f"import os, json; print(json.dumps(os.environ[{ROUND_TRIP!r}]))"
    out = manage(host, "shell", "-c", code)
    assert json.loads(out.strip().splitlines()[-1]) == SPECIAL


def test_while_the_new_password_rolls_out_the_old_login_is_never_refused(rotated):
    counts = rotated["old_login"]
    assert counts["rounds"] > 10, counts
    assert counts["broker_refused"] == 0, counts


def test_rotation_moves_the_services_to_the_other_login(rotated):
    assert urlsplit(rotated["before"]["url"]).username == NAME
    assert urlsplit(rotated["url"]).username == f"{NAME}_alt"


def test_rotation_writes_the_new_password_into_the_services_environment(rotated):
    assert unquote(broker_password(rotated["url"])) == rotated["password"]


def test_rotate_secrets_retires_the_old_login(host, rotated):
    result = connect(host, rotated["before"]["url"])
    assert result.rc != 0 and "ACCESS_REFUSED" in result.stderr, result.stderr[-500:]


def test_rotation_accepts_the_new_password(host, rotated):
    result = connect(host, rotated["url"])
    assert result.rc == 0, result.stderr[-500:]


def test_rotation_restarts_each_worker_with_the_new_url(host, rotated, pool):
    pid = rotated["pids"][pool["name"]]
    assert pid not in ("0", rotated["before"]["pids"][pool["name"]]), rotated["pids"]
    assert f"CELERY_BROKER_URL={rotated['url']}" in process_env(host, pid).splitlines()


def test_rotation_keeps_tasks_running(host, rotated):
    assert manage(host, "run_task", "demo.tasks.add", "2", "3", "--timeout=60").strip() == "5"


def test_rotating_back_play_succeeds(rotated_back):
    returncode = rotated_back["result"].returncode  # not the command line: it holds the password
    assert returncode == 0, play_output(rotated_back)


def test_rotating_back_retires_the_rotated_login(host, rotated_back):
    result = connect(host, rotated_back["before"]["url"])
    assert result.rc != 0 and "ACCESS_REFUSED" in result.stderr, result.stderr[-500:]


def test_rotating_back_restores_the_generated_password_on_the_users_own_login(host, rotated_back):
    assert urlsplit(rotated_back["url"]).username == NAME
    assert broker_password(rotated_back["url"]) == generated_password()
    result = connect(host, rotated_back["url"])
    assert result.rc == 0, result.stderr[-500:]


def test_rotating_back_restarts_each_worker_with_the_generated_url(host, rotated_back, pool):
    pid = rotated_back["pids"][pool["name"]]
    assert pid not in ("0", rotated_back["before"]["pids"][pool["name"]]), rotated_back["pids"]
    assert f"CELERY_BROKER_URL={rotated_back['url']}" in process_env(host, pid).splitlines()


def test_rotating_back_keeps_tasks_running(host, rotated_back):
    assert manage(host, "run_task", "demo.tasks.add", "2", "3", "--timeout=60").strip() == "5"
