"""Helpers of the cluster scenario's tests: reach the fleet's hosts, run site.yml, read units.

Each test module runs its tests once, against the web host (testinfra_hosts), and reaches the
other hosts through node(). Hosts are reached through Molecule's inventory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import testinfra
import yaml

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parent.parent))
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"))
PROJECT = SCENARIO.parent.parent
NAME = "djangoapp"
# The scenario's Docker network (molecule.yml).
NETWORK = "dc-cluster"
BROKER = "dc-cluster-broker"
WEB = "dc-cluster-web"
BEAT_HOST = "dc-cluster-worker1"
APP_HOSTS = [WEB, "dc-cluster-worker1", "dc-cluster-worker2"]
WORKER_HOSTS = {"dc-cluster-worker1": "worker1", "dc-cluster-worker2": "worker2"}
# The ha project's RabbitMQ cluster (vars/ha.yml): its hosts and their nodes' short names.
HA_BROKERS = {
    "dc-cluster-broker": "broker",
    "dc-cluster-web": "web",
    "dc-cluster-worker1": "worker1",
}


def group_vars() -> dict:
    """What converge was given: the django_celery group's variables in Molecule's inventory."""
    merged: dict = {}
    for path in sorted((Path(INVENTORY).parent / "group_vars").glob("*")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def pools() -> list[str]:
    return [pool["name"] for pool in group_vars()["django_celery_worker_pools"]]


def app_units(name: str) -> list[str]:
    """The services of the app a host runs, from its inventory groups."""
    units = []
    if name == WEB:
        units.append(f"{NAME}-web.service")
    if name in WORKER_HOSTS:
        units += [f"{NAME}-worker@{pool}.service" for pool in pools()]
    if name == BEAT_HOST:
        units.append(f"{NAME}-beat.service")
    return units


def node(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def shell(host, code: str) -> str:
    """Run Python in the app's Django shell on a host; return its last output line."""
    result = host.run(f"{NAME}-manage shell -c {shlex.quote(code)}")
    assert result.rc == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def broker_address() -> str:
    return node(BROKER).check_output("hostname -I").split()[0]


def docker(*args: str) -> str:
    """Run the docker client on the controller (pause, kill, inspect a test host); its output."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def from_outside_the_fleet(code: str) -> str:
    """Run Python in a throwaway container on the fleet's network that is in no inventory group
    (so the fleet firewall treats it as a stranger); its output."""
    image = os.environ.get("DJANGO_CELERY_IMAGE_BOOKWORM", "django-celery-systemd:bookworm")
    return docker("run", "--rm", "--network", NETWORK, image, "python3", "-c", code)


def wait_until(predicate, timeout: float, interval: float = 1.0):
    """Call predicate until it returns something true or timeout seconds passed; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def site_yml(*args: str, inventory: str = "") -> subprocess.CompletedProcess:
    """Run site.yml from the controller, as an operator would, against the fleet."""
    return playbook("site.yml", *args, inventory=inventory)


def playbook(name: str, *args: str, inventory: str = "") -> subprocess.CompletedProcess:
    """Run a playbook of the repository (site.yml, playbooks/drain.yml, ...) against the fleet."""
    # Plain text to read (molecule sets ANSIBLE_FORCE_COLOR for its own runs).
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        ["ansible-playbook", "-i", inventory or INVENTORY, str(PROJECT / name), *args],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env=env,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host: {'dc-cluster-web': {'ok': 3, 'changed': 0, ...}}."""
    counts = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^\s*(\S+)\s+:\s+(ok=\d+.*)$", line)
        if match:
            counts[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return counts


def inventory_with_host_vars(label: str, host_vars: dict[str, dict]) -> str:
    """A copy of Molecule's inventory directory (group_vars and .secrets included, so the same
    secrets resolve) with host_vars for some hosts; returns the copy's inventory file."""
    source = Path(INVENTORY).parent
    copy = EPHEMERAL / f"inventory-{label}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy, symlinks=True)
    (copy / "host_vars").mkdir(exist_ok=True)
    for name, values in host_vars.items():
        (copy / "host_vars" / f"{name}.yml").write_text(yaml.safe_dump(values))
    return str(copy / Path(INVENTORY).name)


def main_pid(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show --value --property=MainPID {unit}"))


def process_environment(host, pid: int) -> dict[str, str]:
    out = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


# Run on a host with the units as arguments: each one's main PID, when that process started
# (wall clock, microseconds) and its working directory, resolved.
SNAPSHOT = """
import json, os, subprocess, sys
def show(unit, prop):
    argv = ['systemctl', 'show', '--timestamp=us+utc', '--value', '--property=' + prop, unit]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
out = {}
for unit in sys.argv[1:]:
    pid = int(show(unit, 'MainPID') or 0)
    cwd = os.path.realpath(f'/proc/{pid}/cwd') if pid else ''
    out[unit] = {'pid': pid, 'started': show(unit, 'ExecMainStartTimestamp'), 'cwd': cwd}
print(json.dumps(out))
"""


def wall_clock(systemd_timestamp: str) -> float:
    """'Tue 2026-11-24 22:58:24.123456 UTC' (systemctl show --timestamp=us+utc) as epoch seconds."""
    if not systemd_timestamp:
        return 0.0
    parsed = datetime.strptime(systemd_timestamp, "%a %Y-%m-%d %H:%M:%S.%f UTC")
    return parsed.replace(tzinfo=UTC).timestamp()


def services_snapshot() -> dict[str, dict[str, dict]]:
    """Every app service of every app host: its main PID, start time and working directory."""
    snapshot = {}
    for name in APP_HOSTS:
        units = " ".join(app_units(name))
        out = node(name).check_output(f"python3 -c {shlex.quote(SNAPSHOT)} {units}")
        snapshot[name] = json.loads(out)
        for unit in snapshot[name].values():
            unit["started"] = wall_clock(unit["started"])
    return snapshot


def current_release(name: str) -> str:
    return Path(node(name).check_output(f"readlink /srv/{NAME}/current")).name


def slow_task_report(host, prefix: str, until: str = "", timeout: float = 0) -> dict:
    """The slow-task report of this prefix; with until ("started=N" or "completed=N"), after
    waiting up to timeout seconds for it inside one command on the host (one Django start-up per
    wait, not one per poll)."""
    wait = f" --until-{until} --timeout={timeout:g}" if until else ""
    return json.loads(host.check_output(f"{NAME}-manage slow_task_report --prefix={prefix}{wait}"))


def run_id() -> str:
    return time.strftime("%H%M%S")


# Run in the web host's Django shell: send a 1 s slow task every 0.5 s (ids PREFIX-00000, ...)
# until /var/lib/djangoapp/stop-stream-RUN appears (or 1200 s), then write what it sent to
# /var/lib/djangoapp/stream-RUN.json.
STREAM = """
import json, time, pathlib
from proj.celery import app
stop = pathlib.Path('/var/lib/djangoapp/stop-stream-{run}')
sent, last_sent = [], 0.0
deadline = time.monotonic() + 1200
while not stop.exists() and time.monotonic() < deadline:
    task_id = '{prefix}-%05d' % len(sent)
    app.send_task('demo.tasks.slow', args=[task_id, 1], queue='slow')
    sent.append(task_id)
    last_sent = time.time()
    time.sleep(0.5)
result = {{'ids': sent, 'last_sent': last_sent, 'stopped': stop.exists()}}
pathlib.Path('/var/lib/djangoapp/stream-{run}.json').write_text(json.dumps(result))
"""


def changed_tasks(output: str) -> set[tuple[str, str]]:
    """(task, host) for every task or handler a playbook run reported changed (a delegated
    task's line, "changed: [host -> delegate]", counts for the host it ran for)."""
    found = set()
    for block in re.split(r"^(?=TASK \[|RUNNING HANDLER \[)", output, flags=re.M):
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(?:django_celery : )?(.*?)\]", block)
        if header:
            for name in re.findall(r"^changed: \[([^\]\s]+)(?: -> [^\]]+)?\]", block, re.M):
                found.add((header[1], name))
    return found
