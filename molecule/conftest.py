"""Helpers shared by the testinfra tests of every Molecule scenario.

The scenario's group_vars (what converge was given) are read from Molecule's inventory, so each
test compares the host with the configuration the operator asked for, not with constants.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

NAME = "djangoapp"
MANAGE = f"/usr/local/bin/{NAME}-manage"
CELERY = f"/usr/local/bin/{NAME}-celery"


ROLE_DEFAULTS = (
    Path(__file__).resolve().parent.parent / "roles" / "django_celery" / "defaults" / "main.yml"
)


def configured(name: str):
    """A role variable as the scenario set it, or the role's default when it did not."""
    if name in SCENARIO:
        return SCENARIO[name]
    return yaml.safe_load(ROLE_DEFAULTS.read_text())[name]


def scenario_vars() -> dict:
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    merged: dict = {}
    for path in sorted((inventory / "group_vars").glob("*")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


SCENARIO = scenario_vars() if "MOLECULE_INVENTORY_FILE" in os.environ else {}
POOLS = SCENARIO.get("django_celery_worker_pools", [{"name": "default", "queues": ["celery"]}])

# The fewest tests each scenario's verifier must collect (a little below the real counts).
# Molecule silently drops an additional_files_or_dirs glob that matches nothing, so a moved or
# renamed test directory would otherwise shrink the suite and still pass. A scenario missing
# here fails too. MOLECULE_MIN_TESTS overrides the floor (e.g. 0 to run a single file by hand;
# -k selections are counted before deselection and need no override).
MIN_TESTS = {"default": 90, "rabbitmq": 90, "cluster": 100}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    floor = os.environ.get("MOLECULE_MIN_TESTS", MIN_TESTS.get(scenario))
    if floor is None:
        raise pytest.UsageError(
            f"scenario {scenario!r} has no test count floor: add it to MIN_TESTS in {__file__}"
        )
    if len(items) < int(floor):
        raise pytest.UsageError(
            f"scenario {scenario!r} collected {len(items)} tests, fewer than its floor of "
            f"{floor}: a test file or an additional_files_or_dirs glob went missing"
        )


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


def send_slow_tasks(host, prefix: str, count: int, duration: float, queue: str = "slow") -> None:
    """Enqueue ``count`` demo.tasks.slow tasks (ids PREFIX-0, PREFIX-1, ...) in one process."""
    code = (
        "from demo.tasks import slow\n"
        f"for i in range({count}):\n"
        f"    slow.apply_async(args=['{prefix}-%d' % i, {duration}], queue='{queue}')\n"
    )
    manage(host, "shell", "-c", code)


def running_conf(host, pool: dict) -> dict:
    """The configuration a running worker node reports, with Django's CELERY_ prefix removed."""
    node = f"{pool['name']}@{host.check_output('hostname')}"
    out = run_ok(host, CELERY, "inspect", "conf", f"--destination={node}", "--json", "--timeout=10")
    conf = json.loads(out)[node]
    return {key.removeprefix("CELERY_").lower(): value for key, value in conf.items()}


def unit_property(host, unit: str, prop: str) -> str:
    return run_ok(host, "systemctl", "show", "--value", f"--property={prop}", unit).strip()


def main_pid(host, unit: str) -> int:
    return int(unit_property(host, unit, "MainPID"))


def env_file(host) -> dict:
    """The services' environment file, as a dict (values unquoted)."""
    values = {}
    for line in host.file(f"/etc/{NAME}/{NAME}.env").content_string.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value.strip("'")
    return values


def broker_credentials(host) -> tuple[str, str]:
    """The app's broker user and password, from the broker URL of the environment file."""
    url = urlsplit(env_file(host)["CELERY_BROKER_URL"])
    return unquote(url.username), unquote(url.password)


def redis_cli(host, *args: str, db: int = 0):
    """redis-cli as the app's user: the URL (password included) is read from the environment
    file on the host, so no secret appears in the command line or in a failing test's output."""
    command = " ".join(_quote(a) for a in args)
    script = (
        f"set -a; . /etc/{NAME}/{NAME}.env; "
        f'exec redis-cli --no-auth-warning -u "${{CELERY_BROKER_URL%/*}}/{db}" {command}'
    )
    return host.run(f"sh -c {_quote(script)}")


def controller_secret(name: str) -> str:
    """A secret the role generated and keeps on the controller (django_celery_secrets_dir)."""
    return controller_secrets_dir().joinpath(name).read_text().split()[0]


def controller_secrets_dir() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".secrets" / NAME


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wait_for(predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def slow_task_runs(host, prefix: str, until: str = "", timeout: float = 0) -> dict:
    """The slow-task report of this prefix; with until ("started=N" or "completed=N"), after
    waiting up to timeout seconds for it, polling inside one command on the host (one Django
    start-up per wait, not one per poll: they cost a busy CI machine its CPU)."""
    wait = [f"--until-{until}", f"--timeout={timeout:g}"] if until else []
    return manage_json(host, "slow_task_report", f"--prefix={prefix}", *wait)


def wait_for_started(host, prefix: str, count: int = 1, timeout: float = 30) -> bool:
    """Whether ``count`` slow tasks with this prefix started within timeout seconds."""
    return slow_task_runs(host, prefix, f"started={count}", timeout)["reached"]


def wait_for_slow_tasks(host, prefix: str, count: int, timeout: float) -> dict:
    """Wait until ``count`` slow tasks with this prefix completed; return the last report."""
    return slow_task_runs(host, prefix, f"completed={count}", timeout)


def unique_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def ansible_playbook(*args: str, playbook: str = "") -> subprocess.CompletedProcess:
    """Run ansible-playbook from the controller against this scenario's inventory: the shared
    converge.yml, or a playbook of the repository's (e.g. "playbooks/rotate_secrets.yml")."""
    scenario_dir = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    converge = scenario_dir.parent / "resources" / "converge.yml"
    path = scenario_dir.parent.parent / playbook if playbook else converge
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(path), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def playbook_failure(result: subprocess.CompletedProcess, tail: int = 3000) -> str:
    """What made an ansible-playbook run fail, first line first (pytest's summary of a failed
    test shows only that line, and CI only the summary): the failed task and its error, or
    ansible-playbook's own ERROR line; then the tail of the output."""
    first = f"rc={result.returncode}: no failed task in the output"
    lines = result.stdout.splitlines()
    task, failed = "", []
    for index, line in enumerate(lines):
        if line.startswith("TASK ["):
            task = line.rstrip("* ")
        elif line.startswith(("fatal: ", "failed: ", "ERROR!")):
            ignored = index + 1 < len(lines) and lines[index + 1].startswith("...ignoring")
            if not ignored:
                failed.append(f"{task} {line}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    if failed:
        # The last one: a rescued failure (verify.yml's ping) is followed by the rescue's own,
        # which says more.
        first = f"rc={result.returncode}: {failed[-1]}"[:600]
    elif errors:
        first = f"rc={result.returncode}: {errors[0]}"[:600]
    return f"{first}\n{result.stdout[-tail:]}\n--- stderr\n{result.stderr[-2000:]}"


def configuration_checksums(host, *paths: str) -> dict:
    """SHA-256 of every file under the given directories of the host: {path: digest}."""
    quoted = " ".join(_quote(p) for p in paths)
    # find's own failure (a missing directory) fails the command: its list goes to a file first.
    script = (
        f'set -e; list=$(mktemp); find {quoted} -type f -print0 > "$list"; '
        'sort -z "$list" | xargs -0 -r sha256sum; rm -f "$list"'
    )
    out = run_ok(host, "sh", "-c", script)
    return {line.split(None, 1)[1]: line.split(None, 1)[0] for line in out.splitlines()}


def unit_states(host, pattern: str) -> dict:
    """{unit: "ActiveState/SubState MainPID"} of every loaded unit matching a glob pattern."""
    listed = run_ok(host, "systemctl", "list-units", "--all", "--plain", "--no-legend", pattern)
    units = sorted(line.split()[0] for line in listed.splitlines() if line.strip())
    if not units:
        return {}
    shown = run_ok(host, "systemctl", "show", "--property=Id,ActiveState,SubState,MainPID", *units)
    states = {}
    for block in shown.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[props["Id"]] = (
            f"{props['ActiveState']}/{props['SubState']} {props.get('MainPID', '')}"
        )
    return states


def add_on_the_host(host, a: int, b: int) -> int:
    """demo.tasks.add(a, b) sent through the broker from the host, run by the deployed workers:
    the result they computed."""
    out = manage(host, "run_task", "demo.tasks.add", str(a), str(b), "--timeout=60")
    return json.loads(out.strip().splitlines()[-1])


# A process that holds the credentials the services ran with when it started, as the services of
# a host whose batch has not come yet do while a new password rolls out: until the stop file
# appears (or 600 s), it opens a new database connection and a new broker connection every
# 0.2 s and counts the ones refused. Run in the app's Django shell (its environment file as it
# was at the start). {label} names the files.
OLD_LOGIN_LOOP = r"""
import json, os, time
import kombu
from django.db import connection
stop, out = "/var/tmp/{label}.stop", "/var/tmp/{label}.json"
counts = {{"rounds": 0, "database_refused": 0, "broker_refused": 0,
          "login": connection.settings_dict["USER"] or "sqlite"}}
url = os.environ["CELERY_BROKER_URL"]
deadline = time.monotonic() + 600
while not os.path.exists(stop) and time.monotonic() < deadline:
    counts["rounds"] += 1
    try:
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        counts["database_refused"] += 1
        counts.setdefault("first_database_error", repr(error)[:300])
    try:
        with kombu.Connection(url, connect_timeout=5) as broker:
            broker.ensure_connection(max_retries=1)
    except Exception as error:
        counts["broker_refused"] += 1
        counts.setdefault("first_broker_error", repr(error)[:300])
    time.sleep(0.2)
json.dump(counts, open(out, "w"))
"""


def start_old_login_loop(host, label: str) -> None:
    """Start OLD_LOGIN_LOOP on the host, in the background (a transient unit)."""
    host.run(f"rm -f /var/tmp/{label}.stop /var/tmp/{label}.json")
    code = OLD_LOGIN_LOOP.format(label=label)
    run_ok(host, "systemd-run", f"--unit={label}", "--collect", MANAGE, "shell", "-c", code)


def stop_old_login_loop(host, label: str) -> dict:
    """Stop the loop and return its counts."""
    run_ok(host, "touch", f"/var/tmp/{label}.stop")
    done = wait_for(lambda: host.file(f"/var/tmp/{label}.json").exists, timeout=30)
    assert done, host.run(f"journalctl -u {label} -n 30 --no-pager").stdout
    return json.loads(host.file(f"/var/tmp/{label}.json").content_string)


# --- The front door (nginx) ------------------------------------------------------------------

# One HTTP(S) request from the host to its own nginx on 127.0.0.1, for a site name (Host header
# and TLS server name), trusting only the given certificate (the self-signed one of the site):
# its status, headers (every one, repeated ones included) and body as JSON.
FRONT_DOOR_CLIENT = r"""
import http.client, json, socket, ssl, sys
a = json.loads(sys.argv[1])
raw = socket.create_connection(("127.0.0.1", a["port"]), timeout=30)
if a["scheme"] == "https":
    context = ssl.create_default_context(cafile=a["cafile"])
    raw = context.wrap_socket(raw, server_hostname=a["name"])
connection = http.client.HTTPConnection(a["name"], a["port"], timeout=30)
connection.sock = raw
headers = {"Host": a["name"], **a["headers"]}
connection.request(a["method"], a["path"], body=a["body"], headers=headers)
answer = connection.getresponse()
print(json.dumps({"status": answer.status, "headers": answer.getheaders(),
                  "body": answer.read().decode(errors="replace")}))
"""


def site_certificate(name: str = NAME) -> str:
    return f"/etc/ssl/django_celery/{name}.crt"


def front_door(
    host,
    site: str,
    path: str,
    *,
    scheme: str = "https",
    project: str = NAME,
    method: str = "GET",
    headers: dict | None = None,
    body: str | None = None,
) -> dict:
    """A request through the host's nginx: {"status", "headers": [[name, value], ...], "body"}."""
    request = {
        "name": site,
        "port": 443 if scheme == "https" else 80,
        "scheme": scheme,
        "cafile": site_certificate(project),
        "method": method,
        "path": path,
        "headers": headers or {},
        "body": body,
    }
    return json.loads(run_ok(host, "python3", "-c", FRONT_DOOR_CLIENT, json.dumps(request)))


def header_values(answer: dict, name: str) -> list[str]:
    return [value for key, value in answer["headers"] if key.lower() == name.lower()]
