"""The fleet's credentials and firewall: the broker and the database let in only the fleet's
hosts with the right credentials, the services run with the operator's secrets, and a foreign
project with hardcoded settings runs with the operator's values instead of its own."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from fleet import (
    BEAT_HOST,
    BROKER,
    INVENTORY,
    NAME,
    WEB,
    app_units,
    broker_address,
    from_outside_the_fleet,
    main_pid,
    node,
    process_environment,
)

testinfra_hosts = [f"ansible://{WEB}"]

# The broker host's ports: Redis, PostgreSQL, and monitoring's node, Redis and PostgreSQL
# exporters and Prometheus (the broker host is the monitoring host too).
PORTS = (6379, 5432, 9100, 9121, 9187, 9090)
# The beat host's: its node exporter and Flower.
BEAT_HOST_PORTS = (9100, 5555)
PORT_PROBE = """
import socket
for address, port in {targets!r}:
    try:
        socket.create_connection((address, port), timeout=3).close()
        print(port, 'open')
    except OSError:
        print(port, 'closed')
"""


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


def psql(query: str) -> str:
    return node(BROKER).check_output(f"runuser -u postgres -- psql -Atc {shlex.quote(query)}")


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


def test_database_stores_the_apps_password_as_scram():
    stored = psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'djangoapp'")
    assert stored.startswith("SCRAM-SHA-256$"), stored[:14]


def test_database_checks_remote_clients_with_scram_only():
    """Every pg_hba rule for network clients asks for SCRAM; none trusts or takes md5."""
    rules = psql(
        "SELECT type, database, user_name, address, auth_method FROM pg_hba_file_rules "
        "WHERE type LIKE 'host%'"
    ).splitlines()
    methods = {rule.split("|")[-1] for rule in rules}
    apps = [rule for rule in rules if "djangoapp" in rule]
    assert apps, rules
    assert methods == {"scram-sha-256"}, rules


def test_broker_database_and_monitoring_ports_are_closed_to_hosts_outside_the_fleet():
    """Redis, PostgreSQL, the exporters, Prometheus and Flower: a container on the same network
    that is not in the inventory cannot even connect,
    while a fleet host connects to the same ports at the same time (so "closed" is the
    firewall, not a service that is down)."""
    beat_host = node(BEAT_HOST).check_output("hostname -I").split()[0]
    targets = [(broker_address(), port) for port in PORTS]
    targets += [(beat_host, port) for port in BEAT_HOST_PORTS]
    probe = PORT_PROBE.format(targets=targets)
    inside = node("dc-cluster-worker2").check_output(f"python3 -c {shlex.quote(probe)}")
    outside = from_outside_the_fleet(probe)
    assert (inside.split(), outside.split()) == (
        [word for _, port in targets for word in (str(port), "open")],
        [word for _, port in targets for word in (str(port), "closed")],
    )


def secret_kept_on_the_controller(project: str) -> str:
    return (Path(INVENTORY).parent / ".secrets" / project / "secret_key").read_text().strip()


def test_running_services_have_the_secret_key_kept_on_the_controller():
    """The web, a worker pool of each worker host and beat: SECRET_KEY in the environment of
    the running process is the one generated once and kept on the controller."""
    expected = secret_kept_on_the_controller(NAME)
    seen = {}
    for name, unit in [
        (WEB, f"{NAME}-web.service"),
        ("dc-cluster-worker1", app_units("dc-cluster-worker1")[0]),
        ("dc-cluster-worker1", f"{NAME}-beat.service"),
        ("dc-cluster-worker2", app_units("dc-cluster-worker2")[-1]),
    ]:
        host = node(name)
        seen[f"{unit}@{name}"] = process_environment(host, main_pid(host, unit)).get(
            "DJANGO_SECRET_KEY"
        )
    assert len(expected) >= 32
    assert set(seen.values()) == {expected}, sorted(seen)


def test_second_projects_running_worker_has_the_operators_secret_key_not_its_own():
    worker2 = node("dc-cluster-worker2")
    settings = worker2.file("/srv/shop/current/src/shop/settings.py").content_string
    hardcoded = next(
        line.split("=", 1)[1].strip().strip("\"'")
        for line in settings.splitlines()
        if line.startswith("SECRET_KEY =")
    )
    running = process_environment(worker2, main_pid(worker2, "shop-worker@shop.service"))
    expected = secret_kept_on_the_controller("shop")
    assert running["DJANGO_SECRET_KEY"] == expected
    assert expected not in (hardcoded, secret_kept_on_the_controller(NAME))


def test_second_project_runs_with_the_operators_debug_secret_and_broker():
    """Its settings file hardcodes DEBUG = True, a SECRET_KEY and a broker elsewhere; the
    settings it runs with have the operator's."""
    worker2 = node("dc-cluster-worker2")
    settings = worker2.file("/srv/shop/current/src/shop/settings.py").content_string
    assert "DEBUG = True" in settings.splitlines()
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
