"""Helpers of the rabbitmq scenario's tests (the shared ones are in molecule/conftest.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from conftest import NAME, configuration_checksums, unit_states

VENV_PYTHON = "/srv/djangoapp/current/venv/bin/python"
ENV_FILE = "/etc/djangoapp/djangoapp.env"
RABBIT = "rabbitmq-server.service"
PROJECT_DIR = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3]))


# When this test session started (the host shares the controller's clock), and the connections
# it saw refused: test_zzz_rabbitmq_log.py expects exactly these refusals in RabbitMQ's log.
SESSION_START = datetime.now(UTC)
REFUSED: list[tuple[str, str]] = []


def connect(host, url: str):
    """Open (and close) one AMQP connection from the host with the app's kombu."""
    code = (
        f"import kombu; kombu.Connection({url!r}, connect_timeout=5)"
        ".ensure_connection(max_retries=1)"
    )
    result = host.run(f'{VENV_PYTHON} -c "{code}"')
    for reason in ("ACCESS_REFUSED", "NOT_ALLOWED"):
        if reason in result.stderr:
            REFUSED.append((reason, urlsplit(url).username))
    return result


def env_file(host) -> dict:
    """The variables of the app's environment file on the host (values unquoted)."""
    values = {}
    for line in host.file(ENV_FILE).content_string.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            values[key] = shlex.split(raw)[0] if raw else ""
    return values


def broker_url(host) -> str:
    return env_file(host)["CELERY_BROKER_URL"]


def broker_password(url: str) -> str:
    return urlsplit(url).password


def with_vhost(url: str, vhost: str) -> str:
    return urlsplit(url)._replace(path="/" + quote(vhost, safe="")).geturl()


def ansible_value(expression: str, *extra_vars: str):
    """What Ansible makes of a Jinja expression for this scenario's host, on the controller.

    Evaluated with the scenario's inventory (its group_vars), so the tests see the values the
    role was given, not a copy of them.
    """
    argv = ["ansible", "all", "-i", os.environ["MOLECULE_INVENTORY_FILE"]]
    argv += ["-m", "ansible.builtin.debug", "-a", f"msg={{{{ {expression} | to_json }}}}"]
    for extra in extra_vars:
        argv += ["-e", extra]
    env = os.environ | {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # Other callbacks (profile_tasks) may print lines around the JSON document.
    start = result.stdout.index("\n{") + 1 if not result.stdout.startswith("{") else 0
    report, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    hosts = report["plays"][0]["tasks"][0]["hosts"]
    assert len(hosts) == 1, hosts
    msg = next(iter(hosts.values()))["msg"]
    return json.loads(msg) if isinstance(msg, str) else msg


def host_state(host) -> dict:
    """What a refused run must leave as it was: the project's configuration files, its current
    release and the states of its units."""
    return {
        "files": configuration_checksums(host, f"/etc/{NAME}"),
        "current": host.file(f"/srv/{NAME}/current").linked_to,
        "units": unit_states(host, f"{NAME}-*.service"),
    }
