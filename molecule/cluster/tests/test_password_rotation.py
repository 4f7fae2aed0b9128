"""Rotating the database password on the live fleet (README: "rotate_secrets.yml: no request
fails, no task is lost"). PostgreSQL holds one password per user, so the new one goes to the
user's other login (djangoapp_alt) and the login the hosts ran with keeps its old password until
every host has restarted; rotate_secrets.yml then stops it from logging in.

The operator's way to rotate a generated secret: delete its file in the inventory's .secrets
directory and run playbooks/rotate_secrets.yml. The rollout (its first plays, site.yml's) runs
alone first, while a process on the last host of the rollout keeps opening database connections
with the old credentials and a client keeps asking the web host's /health/ (a database query and
a broker connection per request); rotate_secrets.yml then retires the old login. The new
password stays in the inventory. The rollout also sets one more environment variable
(DEPLOY_MARKER: a configuration change without a new release); it stays in the hosts'
environment files until test_rollout.py's redeploy, so a module sorted between the two that
expects a run to change nothing must pass it too.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import playbook_failure, start_old_login_loop, stop_old_login_loop
from fleet import (
    APP_HOSTS,
    BEAT_HOST,
    BROKER,
    INVENTORY,
    NAME,
    STREAM,
    WEB,
    WORKER_HOSTS,
    current_release,
    group_vars,
    main_pid,
    node,
    playbook,
    process_environment,
    recap,
    run_id,
    site_yml,
    slow_task_report,
    wait_until,
)

testinfra_hosts = [f"ansible://{WEB}"]

ENV_FILE = f"/etc/{NAME}/{NAME}.env"
WORKER_UNIT = f"{NAME}-worker@default.service"

# On the web host until the stop file appears (or 600 s): GET /health/ from gunicorn as fast as
# one client can; count answers, connection errors and answers whose database check failed (the
# workers' check may fail while a pool restarts: that is not a failed request). A request waits
# up to 35 s, as nginx does (proxy_read_timeout: gunicorn's 30 s timeout + 5 s): while gunicorn
# restarts, systemd holds its socket and the request waits in the backlog, which on a loaded
# 2-core CI machine once took longer than the 10 s this loop used to allow. The slowest answer
# is reported.
HEALTH_LOOP = r"""
import json, os, time, urllib.error, urllib.request
counts = {"requests": 0, "answered": 0, "database_failed": 0, "connection_errors": 0}
counts["slowest"] = 0.0
deadline = time.monotonic() + 600
while not os.path.exists("/var/tmp/health.stop") and time.monotonic() < deadline:
    counts["requests"] += 1
    request = urllib.request.Request(
        "http://127.0.0.1:8000/health/", headers={"X-Forwarded-Proto": "https"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=35) as answer:
            body = answer.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except OSError as error:
        counts["connection_errors"] += 1
        counts.setdefault("first_error", repr(error))
        continue
    counts["slowest"] = max(counts["slowest"], round(time.monotonic() - started, 1))
    counts["answered"] += 1
    report = json.loads(body)
    if not report["checks"]["database"]["ok"]:
        counts["database_failed"] += 1
        counts.setdefault("first_database_failure", report["checks"]["database"])
json.dump(counts, open("/var/tmp/health.json", "w"))
"""


def env_value(name: str, variable: str) -> str:
    return node(name).check_output(f'set -a; . {ENV_FILE}; printf %s "${variable}"')


def psql(query: str, database: str = "postgres") -> str:
    command = f"runuser -u postgres -- psql -d {database} -Atc {shlex.quote(query)}"
    return node(BROKER).check_output(command)


def connects(url: str) -> str:
    """'ok', or the last line of the error, for a new database connection from the web host."""
    code = (
        "import psycopg\n"
        "try:\n"
        f"    psycopg.connect({url!r}, connect_timeout=5).close(); print('ok')\n"
        "except psycopg.OperationalError as exc:\n"
        "    print(str(exc).strip().splitlines()[-1])\n"
    )
    python = f"/srv/{NAME}/current/venv/bin/python"
    return node(WEB).check_output(f"{python} -c {shlex.quote(code)}").strip().splitlines()[-1]


def login_of(url: str) -> str:
    return urlsplit(url).username or ""


@pytest.fixture(scope="module")
def rotated():
    web, last = node(WEB), node(BEAT_HOST)
    run = run_id()
    before = {name: env_value(name, "DATABASE_URL") for name in APP_HOSTS}
    secret = Path(INVENTORY).parent / ".secrets" / NAME / "database_password"
    old_secret = secret.read_text().split()[0]
    secret.unlink()

    label = f"old-login-{run}"
    start_old_login_loop(last, label)
    web.run("rm -f /var/tmp/health.stop /var/tmp/health.json")
    web.check_output(
        f"systemd-run --unit=health-{run} --collect python3 -c {shlex.quote(HEALTH_LOOP)}"
    )
    prefix = f"rotation-{run}"
    stream = STREAM.format(run=run, prefix=prefix)
    web.check_output(
        f"systemd-run --unit=stream-{run} --collect {NAME}-manage shell -c {shlex.quote(stream)}"
    )
    time.sleep(3)

    # The same release, a new password and one setting more: the rollout must restart every
    # service although the current link stays where it was (rotate_secrets.yml gets the same
    # values, as an operator would pass them again).
    marker = f"marker-{run}"
    extra = (
        "-e",
        json.dumps(
            {
                "django_celery_extra_env": {
                    **group_vars()["django_celery_extra_env"],
                    "DEPLOY_MARKER": marker,
                }
            }
        ),
    )
    releases = {name: current_release(name) for name in APP_HOSTS}
    rollout = site_yml(*extra)

    web.check_output(f"install -o {NAME} -m 0644 /dev/null /var/lib/{NAME}/stop-stream-{run}")
    old_login = stop_old_login_loop(last, label)
    web.check_output("touch /var/tmp/health.stop")
    assert wait_until(lambda: web.file("/var/tmp/health.json").exists, 30), "no health report"
    health = json.loads(web.file("/var/tmp/health.json").content_string)
    stream_file = f"/var/lib/{NAME}/stream-{run}.json"
    assert wait_until(lambda: web.file(stream_file).exists, 60), "the stream never finished"
    sent = json.loads(web.file(stream_file).content_string)["ids"]
    slow_task_report(web, prefix, f"completed={len(sent)}", 180)
    print(
        f"during the rollout: {len(sent)} tasks sent; health loop {health}; old login {old_login}"
    )

    retire = playbook("playbooks/rotate_secrets.yml", *extra)
    return {
        "marker": marker,
        "releases": (releases, {name: current_release(name) for name in APP_HOSTS}),
        "worker_environments": {
            name: process_environment(node(name), main_pid(node(name), WORKER_UNIT))
            for name in WORKER_HOSTS
        },
        "before": before,
        "after": {name: env_value(name, "DATABASE_URL") for name in APP_HOSTS},
        "old_secret": old_secret,
        "new_secret": secret.read_text().split()[0],
        "rollout": rollout,
        "retire": retire,
        "old_login": old_login,
        "health": health,
        "sent": sent,
        "tasks": slow_task_report(web, prefix),
    }


def test_the_rollout_of_a_new_database_password_succeeds(rotated):
    assert rotated["rollout"].returncode == 0, playbook_failure(rotated["rollout"])


def test_a_configuration_change_without_a_new_release_reaches_the_running_workers(rotated):
    """The rollout changed the environment file, not the release: the workers still had to
    restart into it (their running processes hold the new setting and the new login)."""
    before, after = rotated["releases"]
    assert after == before, (before, after)
    for name, environment in rotated["worker_environments"].items():
        assert environment.get("DEPLOY_MARKER") == rotated["marker"], name
        assert login_of(environment.get("DATABASE_URL", "")) == f"{NAME}_alt", name


def test_rotate_secrets_then_succeeds(rotated):
    assert rotated["retire"].returncode == 0, playbook_failure(rotated["retire"])


def test_every_app_host_moves_to_the_other_login_with_the_new_password(rotated):
    logins = {name: login_of(url) for name, url in rotated["after"].items()}
    assert {login_of(url) for url in rotated["before"].values()} == {NAME}
    assert logins == dict.fromkeys(APP_HOSTS, f"{NAME}_alt")
    passwords = {unquote(urlsplit(url).password or "") for url in rotated["after"].values()}
    assert passwords == {rotated["new_secret"]}


def test_a_host_not_yet_restarted_keeps_connecting_with_the_old_login(rotated):
    counts = rotated["old_login"]
    assert counts["login"] == NAME, counts
    assert counts["rounds"] > 20, counts
    assert counts["database_refused"] == 0, counts


def test_no_request_fails_while_the_new_password_rolls_out(rotated):
    health = rotated["health"]
    assert health["requests"] > 20, health
    assert (health["connection_errors"], health["database_failed"]) == (0, 0), health


def test_no_task_sent_during_the_rotation_is_lost_or_run_twice(rotated):
    report = rotated["tasks"]
    assert len(rotated["sent"]) > 20, len(rotated["sent"])
    assert sorted(report["ids"]) == sorted(rotated["sent"])
    assert (report["started_twice"], report["duplicated"]) == (0, 0), report


def test_after_rotate_secrets_the_old_login_cannot_log_in(rotated):
    error = connects(rotated["before"][WEB])
    assert "not permitted to log in" in error, error


def test_after_rotate_secrets_the_new_login_connects(rotated):
    assert connects(rotated["after"][WEB]) == "ok"


def test_a_table_made_through_the_other_login_belongs_to_the_apps_user(rotated):
    code = (
        "from django.db import connection\n"
        "with connection.cursor() as c: c.execute('CREATE TABLE rotation_probe (x int)')\n"
    )
    node(WEB).check_output(f"{NAME}-manage shell -c {shlex.quote(code)}")
    query = "SELECT tableowner FROM pg_tables WHERE tablename = 'rotation_probe'"
    owner = psql(query, database=NAME).strip()
    psql("DROP TABLE rotation_probe", database=NAME)
    assert owner == NAME


def test_the_rotation_prints_no_password(rotated):
    output = "".join(r.stdout + r.stderr for r in (rotated["rollout"], rotated["retire"]))
    secrets = (rotated["old_secret"], rotated["new_secret"])
    assert [secret for secret in secrets if secret in output] == []


def test_rotate_secrets_after_the_rollout_restarts_nothing_on_the_app_hosts(rotated):
    """Its rollout finds the fleet as it should be; only the database host changes (the old
    login stops logging in)."""
    changed = {name: counts["changed"] for name, counts in recap(rotated["retire"].stdout).items()}
    assert {name: changed.get(name) for name in APP_HOSTS} == dict.fromkeys(APP_HOSTS, 0)
    assert changed[BROKER] > 0, changed
