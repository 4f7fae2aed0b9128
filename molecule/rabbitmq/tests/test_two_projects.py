"""Two projects on one RabbitMQ (molecule/rabbitmq/converge.yml): the sample app and the shop
test project, a vhost and a user each. The server's one configuration file gives both what they
need (the longer consumer timeout); a project's credentials do not open the other's vhost;
redeploying the shop project with a longer consumer timeout gives it to the running server
without a restart; removing the shop project leaves the sample app and the server running."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import NAME, SCENARIO, add_on_the_host, ansible_playbook, main_pid, run_ok
from rabbitmq_helpers import RABBIT, broker_url, connect, with_vhost

SHOP = "shop"
ENVSITE = "envsite"
SHOP_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "projects" / "shop.yml").read_text()
)
LONGER = 900000


def running_consumer_timeout(host) -> int:
    out = run_ok(
        host,
        "runuser",
        "-u",
        "rabbitmq",
        "--",
        "/usr/sbin/rabbitmqctl",
        "-q",
        "eval",
        "application:get_env(rabbit, consumer_timeout).",
    )
    return int(re.search(r"\{ok,(\d+)\}", out).group(1))


def configured_consumer_timeout(host) -> int:
    conf = host.file("/etc/rabbitmq/rabbitmq.conf").content_string
    return int(re.search(r"^consumer_timeout = (\d+)$", conf, re.M).group(1))


def sample_app_pids(host) -> dict:
    units = run_ok(host, "systemctl", "list-units", "--plain", "--no-legend", f"{NAME}-*.service")
    names = [line.split()[0] for line in units.splitlines() if line.strip()]
    names = [n for n in names if re.search(r"-(web|beat|worker@[^.]+)\.service$", n)]
    return {unit: main_pid(host, unit) for unit in names}


def shop_ping(host) -> str:
    code = "from shop.tasks import ping; print(ping.apply_async(queue='shop').get(timeout=60))"
    result = host.run(f"{SHOP}-manage shell -c {shlex.quote(code)}")
    return (result.stdout.strip().splitlines() or [""])[-1] if result.rc == 0 else result.stderr


def sample_app_add(host) -> int:
    return add_on_the_host(host, 40, 2)


def shop_broker_url(host) -> str:
    for line in host.file(f"/etc/{SHOP}/{SHOP}.env").content_string.splitlines():
        if line.startswith("CELERY_BROKER_URL="):
            return shlex.split(line.partition("=")[2])[0]
    raise AssertionError("no CELERY_BROKER_URL in the shop project's environment file")


def test_both_projects_run_their_tasks_on_the_shared_rabbitmq(host):
    assert (sample_app_add(host), shop_ping(host).startswith("pong from ")) == (42, True)


def test_the_server_keeps_the_longer_consumer_timeout_of_the_two_projects(host):
    sample_app = SCENARIO["django_celery_rabbitmq_consumer_timeout_ms"]
    assert SHOP_VARS["django_celery_rabbitmq_consumer_timeout_ms"] < sample_app
    assert (configured_consumer_timeout(host), running_consumer_timeout(host)) == (
        sample_app,
        sample_app,
    )


def rabbitmqctl_json(host, *args: str):
    out = run_ok(
        host, "runuser", "-u", "rabbitmq", "--", "/usr/sbin/rabbitmqctl", "-q", *args,
        "--formatter", "json",
    )  # fmt: skip
    return json.loads(out)


def test_each_project_has_rights_on_its_own_vhost_only(host):
    """(The envsite project, tests/test_envsite.py, is the third on the server.)"""
    users = sorted(entry["user"] for entry in rabbitmqctl_json(host, "list_users"))
    assert users == sorted([NAME, SHOP, ENVSITE])
    rights = {
        user: sorted(p["vhost"] for p in rabbitmqctl_json(host, "list_user_permissions", user))
        for user in (NAME, SHOP, ENVSITE)
    }
    assert rights == {NAME: [NAME], SHOP: [SHOP], ENVSITE: [ENVSITE]}


def test_a_projects_credentials_do_not_open_the_other_projects_vhost(host):
    sample_in_shop = connect(host, with_vhost(broker_url(host), SHOP))
    shop_in_sample = connect(host, with_vhost(shop_broker_url(host), NAME))
    assert sample_in_shop.rc != 0 and "NOT_ALLOWED" in sample_in_shop.stderr
    assert shop_in_sample.rc != 0 and "NOT_ALLOWED" in shop_in_sample.stderr


SHOP_WORKER = f"{SHOP}-worker@shop.service"


@pytest.fixture(scope="module")
def shop_with_a_longer_timeout(host):
    before = {"rabbit": main_pid(host, RABBIT), "sample": sample_app_pids(host)}
    shop_worker_before = main_pid(host, SHOP_WORKER)
    extra = {**SHOP_VARS, "django_celery_rabbitmq_consumer_timeout_ms": LONGER}
    result = ansible_playbook("-e", json.dumps(extra))
    after = {"rabbit": main_pid(host, RABBIT), "sample": sample_app_pids(host)}
    return {
        "result": result,
        "before": before,
        "after": after,
        "shop_worker": (shop_worker_before, main_pid(host, SHOP_WORKER)),
    }


def test_a_longer_timeout_of_one_project_reaches_the_running_server(
    host, shop_with_a_longer_timeout
):
    result = shop_with_a_longer_timeout["result"]
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (configured_consumer_timeout(host), running_consumer_timeout(host)) == (LONGER, LONGER)


def test_a_longer_timeout_restarts_that_projects_workers_so_their_channels_get_it(
    shop_with_a_longer_timeout,
):
    before, after = shop_with_a_longer_timeout["shop_worker"]
    assert after not in (0, before)


def test_a_longer_timeout_of_one_project_restarts_neither_rabbitmq_nor_the_other_project(
    shop_with_a_longer_timeout,
):
    assert shop_with_a_longer_timeout["after"] == shop_with_a_longer_timeout["before"]


@pytest.fixture(scope="module")
def shop_removed(host, shop_with_a_longer_timeout):
    before = {"rabbit": main_pid(host, RABBIT), "sample": sample_app_pids(host)}
    extra = {**SHOP_VARS, "django_celery_state": "absent"}
    first = ansible_playbook("-e", json.dumps(extra))
    again = ansible_playbook("-e", json.dumps(extra))
    after = {"rabbit": main_pid(host, RABBIT), "sample": sample_app_pids(host)}
    return {"first": first, "again": again, "before": before, "after": after}


def test_removing_a_project_from_rabbitmq_succeeds_and_a_second_removal_changes_nothing(
    shop_removed,
):
    first, again = shop_removed["first"], shop_removed["again"]
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert re.findall(r"changed=(\d+)", again.stdout) == ["0"], again.stdout[-3000:]


def test_removing_a_project_removes_its_rabbitmq_user_vhost_and_needs(host, shop_removed):
    users = [entry["user"] for entry in rabbitmqctl_json(host, "list_users")]
    vhosts = [entry["name"] for entry in rabbitmqctl_json(host, "list_vhosts")]
    assert (SHOP in users, SHOP in vhosts) == (False, False), (users, vhosts)
    assert not host.file(f"/etc/rabbitmq/django_celery/{SHOP}.json").exists
    leftovers = [
        f"/etc/{SHOP}",
        f"/srv/{SHOP}",
        f"/var/lib/{SHOP}",
        f"/usr/local/bin/{SHOP}-manage",
        f"/etc/nginx/conf.d/django_celery-{SHOP}.conf",
        f"/etc/ssl/django_celery/{SHOP}.key",
    ]
    assert [path for path in leftovers if host.file(path).exists] == []
    units = host.run(f"systemctl list-unit-files --plain --no-legend '{SHOP}-*'")
    assert units.stdout.strip() == "", units.stdout


def test_removing_a_project_restarts_neither_rabbitmq_nor_the_other_project(host, shop_removed):
    assert shop_removed["after"] == shop_removed["before"]
    assert sample_app_add(host) == 42
