"""Growing and shrinking a running fleet with site.yml, as an operator would: a fresh fifth
container is added to the workers group of a copy of the inventory, one site.yml run brings it
into the fleet (the broker and database firewall learn its address, it runs tasks) while the
hosts already running restart nothing; taking it out of the inventory again and re-running
site.yml takes it out of the firewall and of the hosts the unacked-task timer waits for.

This module runs first of the scenario's tests (alphabetical order) and removes its host
before the others start.
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
import yaml
from conftest import playbook_failure
from fleet import (
    APP_HOSTS,
    BEAT_HOST,
    BROKER,
    EPHEMERAL,
    INVENTORY,
    SCENARIO,
    WORKER_HOSTS,
    changed_tasks,
    node,
    recap,
    services_snapshot,
    shell,
    site_yml,
)

testinfra_hosts = [f"ansible://{APP_HOSTS[0]}"]

NEW = "dc-cluster-worker3"
NEW_HOSTNAME = "worker3"
# Copied from: the platform whose image and options the new host shares.
TEMPLATE = "dc-cluster-worker1"
# The role writes its files in one task per phase (tasks/write_files.yml); -vvv shows which.
WRITE_FILES_TASK = "Write the files, each only if it changed"
UNACKED_CONFIG = "/etc/djangoapp/unacked.json"
FIREWALL_NEEDS_TASK = "Record the ports this project guards and its fleet's addresses"
FIREWALL_RULES_TASK = "Write the fleet's firewall rules"
FIREWALL_RELOAD_HANDLER = "Reload the fleet firewall"
FIREWALL_SET = "nft --json list set inet django_celery fleet_djangoapp"
# Monitoring is on in this scenario: Prometheus on the broker host scrapes each node exporter.
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
# Ports of the broker host: PostgreSQL serves djangoapp and ha; RabbitMQ only ha (vars/ha.yml).
SHARED_HOST_PORTS = {5432: "postgresql", 5672: "ha's rabbitmq"}


def docker_run_argv() -> list[str]:
    """`docker run` for the new host, with the options Molecule gives the template platform."""
    platforms = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"]
    spec = next(p for p in platforms if p["name"] == TEMPLATE)
    argv = ["docker", "run", "-d", "--name", NEW, "--hostname", NEW_HOSTNAME]
    argv += ["--cgroupns", spec["cgroupns_mode"]]
    for network in spec["networks"]:
        argv += ["--network", network["name"]]
    for volume in spec["volumes"]:
        argv += ["-v", volume]
    for tmpfs in spec["tmpfs"]:
        argv += ["--tmpfs", tmpfs]
    for option in spec["security_opts"]:
        argv += ["--security-opt", option]
    for capability in spec["capabilities"]:
        argv += ["--cap-add", capability]
    return [*argv, expand(spec["image"]), *shlex.split(spec["command"])]


def expand(value: str) -> str:
    """${NAME:-default} as Molecule expands it in molecule.yml (the image from the environment)."""
    return re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), value
    )


def inventory_with_new_worker() -> str:
    """A copy of Molecule's inventory directory (group_vars and .secrets included, so the same
    secrets resolve) with the new host in the django_celery and workers groups."""
    source = Path(INVENTORY).parent
    copy = EPHEMERAL / "inventory-added-host"
    subprocess.run(["rm", "-rf", str(copy)], check=True)
    subprocess.run(["cp", "-a", str(source), str(copy)], check=True)
    inventory_file = copy / Path(INVENTORY).name
    inventory = yaml.safe_load(inventory_file.read_text())
    connection = {"ansible_connection": "community.docker.docker"}
    for group in ("django_celery", "django_celery_workers"):
        inventory[group]["hosts"][NEW] = connection
    inventory["all"]["hosts"][NEW] = connection
    inventory_file.write_text(yaml.safe_dump(inventory))
    return str(inventory_file)


def fleet_set(broker) -> list[str]:
    """The addresses in the role's firewall set on the broker host."""
    listing = json.loads(broker.check_output(FIREWALL_SET))
    elements = next(item["set"] for item in listing["nftables"] if "set" in item)
    return sorted(elements.get("elem", []))


def hba_sources(broker) -> list[str]:
    """The sources of pg_hba.conf's lines for the app's database on the database host."""
    out = broker.check_output("cat /etc/postgresql/*/main/pg_hba.conf")
    lines = [line.split() for line in out.splitlines() if not line.startswith("#")]
    return [f[3] for f in lines if f[:3] == ["host", "djangoapp", "djangoapp"] and len(f) > 4]


def ports_reached_from_the_new_host(address: str, ports: dict[int, str]) -> dict[str, str]:
    """{port name: "open", "refused" or "dropped"} for TCP connections from the new host to
    `address` (a firewall drop shows as a connection that times out)."""
    probe = (
        "import errno, json, socket\n"
        "reach = {}\n"
        f"for port, name in {ports!r}.items():\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        f"        s.connect(({address!r}, port)); reach[name] = 'open'\n"
        "    except socket.timeout:\n"
        "        reach[name] = 'dropped'\n"
        "    except ConnectionRefusedError:\n"
        "        reach[name] = 'refused'\n"
        "print(json.dumps(reach))\n"
    )
    out = subprocess.run(
        ["docker", "exec", NEW, "python3", "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def remove_new_host() -> None:
    subprocess.run(["docker", "rm", "-f", "-v", NEW], capture_output=True, check=False)


@pytest.fixture(scope="module")
def grown():
    """The fleet before and after one site.yml run with the new host in the inventory; the new
    host is removed again when the module is done."""
    remove_new_host()
    subprocess.run(docker_run_argv(), capture_output=True, text=True, check=True)
    before = services_snapshot()
    began = time.monotonic()
    # At -vvv with --diff: a fresh host gets every secret written, the database password too.
    result = site_yml("-vvv", "--diff", inventory=inventory_with_new_worker())
    took = time.monotonic() - began
    after = services_snapshot()
    hba = hba_sources(node(BROKER))
    scraped = node(BROKER).check_output(f"cat {PROMETHEUS_CONFIG}")
    address = subprocess.run(
        ["docker", "exec", NEW, "hostname", "-I"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    reach = ports_reached_from_the_new_host(
        node(BROKER).check_output("hostname -I").split()[0], SHARED_HOST_PORTS
    )
    try:
        yield {
            "result": result,
            "before": before,
            "after": after,
            "address": address,
            "took": took,
            "hba": hba,
            "scraped": scraped,
            "reach": reach,
        }
    finally:
        remove_new_host()


@pytest.fixture(scope="module")
def shrunk(grown):
    """The fleet after the new host left the inventory: site.yml run again with Molecule's own
    inventory, its two phases that know the fleet's hosts only (the firewall is in
    infrastructure, the unacked-task timer's list in activate): CI's time budget."""
    remove_new_host()
    result = site_yml("--tags", "django_celery_infrastructure,django_celery_activate")
    scraped = node(BROKER).check_output(f"cat {PROMETHEUS_CONFIG}")
    return {"result": result, "address": grown["address"], "scraped": scraped}


def test_one_site_yml_run_brings_a_new_worker_host_into_the_running_fleet(grown):
    result = grown["result"]
    print(f"site.yml with a fifth host: {grown['took']:.0f} s")
    assert result.returncode == 0, playbook_failure(result)
    assert recap(result.stdout)[NEW]["failed"] == 0


def test_the_new_worker_host_runs_tasks_sent_from_the_web_host(grown, host):
    """Eighteen 1-second tasks on the slow queue: three hosts of two processes each (prefetch
    1) share them, so each host must run some; each completion records its host."""
    prefix = "grown"
    code = (
        "import json; from proj.celery import app; from demo.models import SlowTaskCompletion; "
        f"SlowTaskCompletion.objects.filter(task_id__startswith='{prefix}-').delete(); "
        f"rs = [app.send_task('demo.tasks.slow', args=['{prefix}-%d' % i, 1], queue='slow') "
        "for i in range(18)]; [r.get(timeout=120) for r in rs]; "
        f"rows = SlowTaskCompletion.objects.filter(task_id__startswith='{prefix}-'); "
        "print(json.dumps(sorted(set(rows.values_list('hostname', flat=True)))))"
    )
    assert json.loads(shell(host, code)) == sorted([*WORKER_HOSTS.values(), NEW_HOSTNAME])


def test_adding_a_host_at_vvv_with_diff_prints_no_secret(grown):
    """Every secret kept on the controller (broker and database passwords, SECRET_KEY, Redis's
    lock on its default user, for both projects of the fleet) is absent from the output."""
    output = grown["result"].stdout + grown["result"].stderr
    secrets = {
        f"{path.parent.name}/{path.name}": path.read_text().split()[0]
        for path in (Path(INVENTORY).parent / ".secrets").glob("*/*")
    }
    assert len(output) > 100_000 and "djangoapp/database_password" in secrets, sorted(secrets)
    assert "djangoapp/monitoring_password" in secrets, sorted(secrets)
    assert [name for name, secret in secrets.items() if secret in output] == []


def test_the_broker_firewall_lets_the_new_host_in(grown):
    assert grown["address"], "the new host was not provisioned"
    assert grown["address"] in fleet_set(node(BROKER))


def test_the_database_lets_the_new_host_in(grown):
    """pg_hba.conf on the database host right after the run (read by the fixture: the host is
    removed again before the module ends)."""
    assert f"{grown['address']}/32" in grown["hba"]


def test_the_new_host_reaches_the_database_the_projects_share_but_not_the_other_projects_broker(
    grown,
):
    """The broker host's PostgreSQL serves djangoapp and ha, whose fleets differ (the new host
    is in djangoapp's workers group, and ha has a workers group of its own). The host's one
    firewall table lets each fleet reach its own project's ports: the new host reaches
    PostgreSQL, and its packets to ha's RabbitMQ, which listens there, are dropped. (With a table
    per project, ha's dropped the new host's PostgreSQL connections: CI, 2026-12-07.)"""
    assert grown["reach"] == {"postgresql": "open", "ha's rabbitmq": "dropped"}


def changed_files(output: str) -> dict[str, list[str]]:
    """{host: files} that the file-writing task reported changed in a -vvv run."""
    found = {}
    for block in re.split(r"^(?=TASK \[|RUNNING HANDLER \[)", output, flags=re.M):
        if block.startswith(f"TASK [django_celery : {WRITE_FILES_TASK}]"):
            for name, result in re.findall(
                r"^changed: \[([^\]]+)\] => (\{.*?^\})$", block, re.M | re.S
            ):
                found.setdefault(name, []).extend(json.loads(result)["changed_files"])
    return found


def test_the_hosts_already_running_changed_only_the_list_of_worker_nodes_and_the_firewall(grown):
    """On the hosts already running, the changes are the unacked-task command's list of the
    worker nodes that must answer (it now names the new host's pools) and, with monitoring on,
    the fleet firewall's set of addresses (every host guards its node exporter's port)."""
    output = grown["result"].stdout
    changed = changed_tasks(output)
    on_running = {(task, name) for task, name in changed if name in APP_HOSTS}
    expected = {
        (task, name)
        for name in APP_HOSTS
        for task in (
            WRITE_FILES_TASK,
            FIREWALL_NEEDS_TASK,
            FIREWALL_RULES_TASK,
            FIREWALL_RELOAD_HANDLER,
        )
    }
    assert on_running == expected, sorted(changed)
    files = {name: sorted(set(paths)) for name, paths in changed_files(output).items()}
    assert {name: files.get(name) for name in APP_HOSTS} == dict.fromkeys(
        APP_HOSTS, [UNACKED_CONFIG]
    )


def test_the_services_already_running_were_not_restarted(grown):
    """Same main PID, same start time, for every service of every app host already running."""
    assert grown["after"] == grown["before"]


def test_taking_the_host_out_of_the_inventory_takes_it_out_of_the_firewall(grown, shrunk):
    result = shrunk["result"]
    assert result.returncode == 0, playbook_failure(result)
    addresses = fleet_set(node(BROKER))
    assert shrunk["address"] not in addresses
    assert len(addresses) == len(APP_HOSTS) + 1, addresses


def test_prometheus_scrapes_the_new_host(grown):
    assert f"{grown['address']}:9100" in grown["scraped"], grown["scraped"]


def test_taking_the_host_out_of_the_inventory_takes_it_out_of_prometheus(shrunk):
    assert shrunk["result"].returncode == 0
    assert f"{shrunk['address']}:" not in shrunk["scraped"], shrunk["scraped"]


def test_taking_the_host_out_of_the_inventory_takes_it_out_of_pg_hba(shrunk):
    assert shrunk["result"].returncode == 0
    assert f"{shrunk['address']}/32" not in hba_sources(node(BROKER))


def test_taking_the_host_out_of_the_inventory_takes_its_pools_out_of_the_expected_nodes(shrunk):
    """Else the unacked-task timer would wait forever for the removed host to answer."""
    assert shrunk["result"].returncode == 0
    config = json.loads(node(BEAT_HOST).check_output("cat /etc/djangoapp/unacked.json"))
    assert config["nodes"] and not [n for n in config["nodes"] if n.endswith(f"@{NEW_HOSTNAME}")]
