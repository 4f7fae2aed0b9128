"""The fleet: work spreads over the worker hosts, one beat, credentials everywhere, a rolling
redeploy that loses no task, and a foreign project run with the operator's values.

Each test names its host (testinfra's --hosts=all would run it on every host); hosts are
reached through Molecule's inventory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parent.parent))
PROJECT = SCENARIO.parent.parent
APP_HOSTS = ["dc-cluster-web", "dc-cluster-worker1", "dc-cluster-worker2"]
WORKER_HOSTS = {"dc-cluster-worker1": "worker1", "dc-cluster-worker2": "worker2"}

# Run each test once, against the web host; tests reach other hosts themselves.
testinfra_hosts = ["ansible://dc-cluster-web"]


def node(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


def shell(host, code: str) -> str:
    """Run Python in the app's Django shell on a host; return its last output line."""
    result = host.run(f"djangoapp-manage shell -c {shlex.quote(code)}")
    assert result.rc == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def broker_address() -> str:
    return node("dc-cluster-broker").check_output("hostname -I").split()[0]


def test_tasks_sent_from_web_run_on_both_worker_hosts(host):
    """Twelve 1-second tasks on the slow queue: one host's two processes (prefetch 1) cannot
    hold them all, so both hosts must run some; each completion records its host."""
    prefix = f"spread-{time.strftime('%H%M%S')}"
    code = (
        "import json; from proj.celery import app; from demo.models import SlowTaskCompletion; "
        f"rs = [app.send_task('demo.tasks.slow', args=['{prefix}-%d' % i, 1], queue='slow') "
        "for i in range(12)]; [r.get(timeout=120) for r in rs]; "
        f"rows = SlowTaskCompletion.objects.filter(task_id__startswith='{prefix}-'); "
        "print(json.dumps(sorted(set(rows.values_list('hostname', flat=True)))))"
    )
    assert json.loads(shell(host, code)) == sorted(WORKER_HOSTS.values())


def test_exactly_one_beat_runs_in_the_fleet():
    active = [
        name
        for name in APP_HOSTS + ["dc-cluster-broker"]
        if node(name).run("systemctl is-active djangoapp-beat.service").stdout.strip() == "active"
    ]
    assert active == ["dc-cluster-worker1"]


def test_beat_heartbeat_advances_in_the_shared_database(host):
    before = json.loads(host.check_output("djangoapp-manage heartbeat_status"))["count"]
    time.sleep(12)
    after = json.loads(host.check_output("djangoapp-manage heartbeat_status"))["count"]
    assert after > before


def test_broker_refuses_a_client_without_credentials(host):
    address = broker_address()
    code = (
        f"import socket; s = socket.create_connection(({address!r}, 6379), timeout=5); "
        "s.sendall(b'PING\\r\\n'); print(s.recv(100).decode().strip())"
    )
    reply = host.check_output(f"python3 -c {shlex.quote(code)}")
    assert reply.startswith("-NOAUTH"), reply


def test_database_refuses_a_client_without_password(host):
    code = (
        "import psycopg\n"
        "try:\n"
        f"    psycopg.connect(host={broker_address()!r}, dbname='djangoapp', user='djangoapp',"
        " password='', connect_timeout=5)\n"
        "    print('connected')\n"
        "except psycopg.OperationalError as exc:\n"
        "    print('refused:', str(exc).splitlines()[0])\n"
    )
    out = host.check_output(f"/srv/djangoapp/current/venv/bin/python -c {shlex.quote(code)}")
    assert out.startswith("refused:") and "password" in out, out


def test_broker_and_database_ports_are_closed_to_hosts_outside_the_fleet():
    """A container on the same network that is not in the inventory cannot even connect."""
    address = broker_address()
    probe = (
        "import socket\n"
        "for port in (6379, 5432):\n"
        "    try:\n"
        f"        socket.create_connection(({address!r}, port), timeout=3).close()\n"
        "        print(port, 'open')\n"
        "    except OSError:\n"
        "        print(port, 'closed')\n"
    )
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "dc-cluster",
            "django-celery-systemd:bookworm",
            "python3",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6379", "closed", "5432", "closed"]


def test_second_project_runs_with_the_operators_debug_secret_and_broker():
    worker2 = node("dc-cluster-worker2")
    code = (
        "import os, json; from django.conf import settings; "
        "print(json.dumps([settings.DEBUG, settings.SECRET_KEY == os.environ['DJANGO_SECRET_KEY'],"
        " 'hardcoded' in settings.SECRET_KEY, settings.CELERY_BROKER_URL.split('@')[-1]]))"
    )
    out = worker2.check_output(f"shop-manage shell -c {shlex.quote(code)}").splitlines()[-1]
    assert json.loads(out) == [False, True, False, f"{broker_address()}:6379/2"]


def test_second_projects_worker_executes_its_task_through_the_operators_broker():
    worker2 = node("dc-cluster-worker2")
    code = "from shop.tasks import ping; print(ping.apply_async(queue='shop').get(timeout=60))"
    out = worker2.check_output(f"shop-manage shell -c {shlex.quote(code)}").splitlines()[-1]
    assert out == "pong from worker2"


def test_second_projects_running_worker_uses_the_operators_broker_not_its_own():
    worker2 = node("dc-cluster-worker2")
    out = worker2.check_output(
        "shop-celery inspect conf --destination=shop@worker2 --json --timeout=10"
    )
    reported = json.loads(out)["shop@worker2"]
    conf = {k.removeprefix("CELERY_").lower(): v for k, v in reported.items()}
    assert (conf["task_acks_late"], "shop.invalid" in json.dumps(conf)) == (True, False)


STREAM = """
import json, time, pathlib
from proj.celery import app
stop = pathlib.Path('/var/lib/djangoapp/stop-stream')
sent = []
deadline = time.monotonic() + 600
while not stop.exists() and time.monotonic() < deadline and len(sent) < 600:
    task_id = 'rolling-{run}-%04d' % len(sent)
    app.send_task('demo.tasks.slow', args=[task_id, 1], queue='slow')
    sent.append(task_id)
    time.sleep(0.5)
pathlib.Path('/var/lib/djangoapp/stream-{run}.json').write_text(json.dumps(sent))
"""


def test_rolling_redeploy_with_tasks_in_flight_loses_none(host):
    run = time.strftime("%H%M%S")
    script = STREAM.replace("{run}", run)
    host.run("rm -f /var/lib/djangoapp/stop-stream")
    start = host.run(
        f"systemd-run --unit=slow-stream-{run} --collect "
        f"djangoapp-manage shell -c {shlex.quote(script)}"
    )
    assert start.rc == 0, start.stderr
    time.sleep(5)
    began = time.monotonic()
    deploy = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            INVENTORY,
            str(PROJECT / "site.yml"),
            "-e",
            f"django_celery_release=r{run}",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    redeploy_seconds = time.monotonic() - began
    host.run("install -o djangoapp -m 0644 /dev/null /var/lib/djangoapp/stop-stream")
    assert deploy.returncode == 0, deploy.stdout[-4000:]
    for name in WORKER_HOSTS:
        assert node(name).file("/srv/djangoapp/current").linked_to.endswith(f"/r{run}")

    stream_file = f"/var/lib/djangoapp/stream-{run}.json"
    assert _wait(lambda: host.file(stream_file).exists, 60), "the stream never finished"
    submitted = json.loads(host.file(stream_file).content_string)

    def report():
        return json.loads(
            host.check_output(f"djangoapp-manage slow_task_report --prefix=rolling-{run}-")
        )

    drained = _wait(lambda: report()["completed"] >= len(submitted), 300, interval=3)
    final = report()
    summary = (
        f"rolling redeploy: {redeploy_seconds:.0f} s; submitted {len(submitted)}, "
        f"completed {final['completed']}, ran twice {final['duplicated']}"
    )
    print(summary)
    Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "rolling-report.txt").write_text(
        summary + "\n" + "\n".join(re.findall(r"PLAY RECAP.*", deploy.stdout, re.S))
    )
    assert len(submitted) > 20
    assert drained, summary
    assert sorted(final["ids"]) == sorted(submitted), summary


def _wait(predicate, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


def test_configuration_change_without_a_new_release_reaches_the_running_workers():
    """site.yml's release play changes the environment file; the rollout must restart the
    services even though the release (and so the current link) stays the same."""
    release = Path(node("dc-cluster-worker1").check_output("readlink /srv/djangoapp/current")).name
    marker = f"marker-{time.strftime('%H%M%S')}"
    extra = {
        "django_celery_release": release,
        "django_celery_extra_env": {"CELERY_HEARTBEAT_INTERVAL": "5", "DEPLOY_MARKER": marker},
    }
    deploy = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, str(PROJECT / "site.yml"), "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stdout[-4000:]
    for name in WORKER_HOSTS:
        worker = node(name)
        pid = worker.check_output(
            "systemctl show --value --property=MainPID djangoapp-worker@default.service"
        )
        environment = worker.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()
        assert f"DEPLOY_MARKER={marker}" in environment, name
