"""Two projects on one host, side by side: the sample app on the host's main Redis, and the shop
test project (molecule/default/converge.yml) on a Redis instance of its own. Each runs its
tasks through its own broker; neither's broker credentials open the other's Redis; a third
project that would share a Redis is refused before anything changes."""

import json
import os
import re
import shlex

import pytest
from conftest import NAME, ansible_playbook, run_ok

SHOP = "shop"
SHOP_REDIS = "redis-server@shop.service"
SHOP_PORT = 6380


def redis_as(host, project: str, port: int, *args: str) -> str:
    """redis-cli with the broker user and password of a project (read on the host from its
    environment file, so no secret reaches the command line), against a Redis port: what it
    printed, errors included."""
    command = " ".join(shlex.quote(a) for a in args)
    script = (
        f"set -a; . /etc/{project}/{project}.env; "
        "url=${CELERY_BROKER_URL#redis://}; creds=${url%%@*}; "
        f"exec redis-cli --no-auth-warning -h 127.0.0.1 -p {port} "
        '--user "${creds%%:*}" --pass "$(python3 -c "import sys, urllib.parse; '
        'print(urllib.parse.unquote(sys.argv[1]))" "${creds#*:}")" '
        f"{command}"
    )
    result = host.run(f"sh -c {shlex.quote(script)}")
    return (result.stdout + result.stderr).strip()


def test_the_second_project_runs_its_tasks_through_its_own_redis(host):
    env = host.file(f"/etc/{SHOP}/{SHOP}.env").content_string
    assert f"@127.0.0.1:{SHOP_PORT}/" in env
    code = (
        "from shop.celery import app; "
        "print(app.send_task('shop.tasks.ping', queue='shop').get(timeout=60))"
    )
    out = run_ok(host, f"{SHOP}-manage", "shell", "-c", code)
    assert out.strip().splitlines()[-1].startswith("pong from ")


def test_the_first_project_still_runs_its_tasks(host):
    out = run_ok(
        host, f"{NAME}-manage", "run_task", "demo.tasks.add", "20", "22", "--timeout", "60"
    )
    assert json.loads(out.strip().splitlines()[-1]) == 42


def test_the_second_projects_redis_is_an_instance_of_its_own(host):
    service = host.service(SHOP_REDIS)
    assert (service.is_running, service.is_enabled) == (True, True)
    listening = [s for s in host.socket.get_listening_sockets() if s.endswith(f":{SHOP_PORT}")]
    assert listening and all(s.startswith(("tcp://127.", "tcp://::1")) for s in listening), (
        listening
    )


def test_each_redis_holds_only_its_own_projects_user(host):
    users = {
        path: re.findall(r"^user (\S+)", host.file(path).content_string, re.M)
        for path in ("/etc/redis/users.acl", "/etc/redis/users-shop.acl")
    }
    assert users == {
        "/etc/redis/users.acl": ["default", NAME],
        "/etc/redis/users-shop.acl": ["default", SHOP],
    }


def test_each_projects_credentials_work_on_its_own_redis_only(host):
    results = {
        (project, port): redis_as(host, project, port, "ping")
        for project in (NAME, SHOP)
        for port in (6379, SHOP_PORT)
    }
    assert results[(NAME, 6379)] == results[(SHOP, SHOP_PORT)] == "PONG", results
    # redis-cli reports the refused AUTH, then the PING refused without it.
    assert "WRONGPASS" in results[(NAME, SHOP_PORT)] and "PONG" not in results[(NAME, SHOP_PORT)]
    assert "WRONGPASS" in results[(SHOP, 6379)] and "PONG" not in results[(SHOP, 6379)]


@pytest.fixture(scope="module")
def third_project_on_the_main_redis(host):
    """A third project with the role's Redis and no instance of its own."""
    shop = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", "resources", "shop")
    extra = {
        "django_celery_name": "blog",
        "django_celery_source_path": shop,
        "django_celery_settings_module": "shop.settings",
        "django_celery_app_module": "shop",
        "django_celery_wsgi_module": "shop.wsgi:application",
        "django_celery_post_deploy_commands": [],
        "django_celery_web_bind": "127.0.0.1:8002",
    }
    acl = host.file("/etc/redis/users.acl").content_string
    result = ansible_playbook("-e", json.dumps(extra))
    return {"result": result, "acl_before": acl}


def test_a_third_project_sharing_the_main_redis_is_refused_naming_the_variable(
    third_project_on_the_main_redis,
):
    result = third_project_on_the_main_redis["result"]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "already serves another project" in output and "django_celery_redis_instance" in output


def test_a_refused_third_project_changes_nothing(host, third_project_on_the_main_redis):
    result = third_project_on_the_main_redis["result"]
    assert re.findall(r"changed=(\d+)", result.stdout) == ["0"], result.stdout[-2000:]
    assert not host.file("/etc/blog").exists
    assert (
        host.file("/etc/redis/users.acl").content_string
        == third_project_on_the_main_redis["acl_before"]
    )


def test_the_role_adds_what_it_runs_to_a_project_that_lists_only_django_and_celery(host):
    """The shop project's requirements list neither gunicorn nor Redis's client (nor Celery's
    redis extra); its virtualenv has the role's pins of both, and kombu's Redis transport
    imports."""
    requirements = host.file(f"/srv/{SHOP}/current/src/requirements.txt").content_string.lower()
    assert not re.search(r"^(gunicorn|redis|packaging)\b|celery\[", requirements, re.M)
    listing = run_ok(
        host, f"/srv/{SHOP}/current/venv/bin/python", "-m", "pip", "list", "--format=json"
    )
    versions = {p["name"].lower(): p["version"] for p in json.loads(listing)}
    assert (versions.get("gunicorn"), versions.get("redis")) == ("27.0.1", "8.1.0"), versions
    assert "packaging" in versions


def test_the_second_projects_web_answers_through_the_gunicorn_the_role_added(host):
    assert host.service(f"{SHOP}-web.service").is_running
    code = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:8001/', timeout=20).read().decode())"
    )
    assert run_ok(host, "python3", "-c", code).strip() == "shop"


# --- Removing a project (last: the shop project is gone afterwards) ---------------------------

SHOP_VARS = {
    "django_celery_name": SHOP,
    "django_celery_settings_module": "shop.settings",
    "django_celery_app_module": "shop",
    "django_celery_wsgi_module": "shop.wsgi:application",
    "django_celery_redis_instance": SHOP,
    "django_celery_redis_port": SHOP_PORT,
    "django_celery_beat_enabled": False,
    "django_celery_web_bind": "127.0.0.1:8001",
    "django_celery_state": "absent",
}


def first_project_pids(host) -> dict:
    """Main PIDs of the first project's long-running services (web, beat, worker pools)."""
    units = run_ok(host, "systemctl", "list-units", "--plain", "--no-legend", f"{NAME}-*.service")
    names = [line.split()[0] for line in units.splitlines() if line.strip()]
    running = [name for name in names if re.search(r"-(web|beat|worker@[^.]+)\.service$", name)]
    return {unit: host.service(unit).systemd_properties["MainPID"] for unit in running}


@pytest.fixture(scope="module")
def shop_removed(host):
    """django_celery_state: absent for the shop project, twice (the second must change nothing)."""
    source = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", "resources", "shop")
    extra = json.dumps({**SHOP_VARS, "django_celery_source_path": source})
    before = first_project_pids(host)
    first = ansible_playbook("-e", extra)
    again = ansible_playbook("-e", extra)
    return {"first": first, "again": again, "before": before, "after": first_project_pids(host)}


def test_removing_a_project_succeeds_and_a_second_removal_changes_nothing(shop_removed):
    first, again = shop_removed["first"], shop_removed["again"]
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert re.findall(r"changed=(\d+)", again.stdout) == ["0"], again.stdout[-3000:]


def test_nothing_of_the_removed_project_is_left_on_the_host(host, shop_removed):
    paths = [f"/etc/{SHOP}", f"/srv/{SHOP}", f"/var/lib/{SHOP}", f"/var/cache/{SHOP}"]
    paths += [f"/usr/local/bin/{SHOP}-{tool}" for tool in ("manage", "celery", "unacked")]
    paths += ["/etc/redis/redis-shop.conf", "/etc/redis/users-shop.acl", "/var/lib/redis/shop"]
    assert [path for path in paths if host.file(path).exists] == []
    units = host.run(f"systemctl list-unit-files --plain --no-legend '{SHOP}-*'")
    assert units.stdout.strip() == "", units.stdout
    assert not host.service(SHOP_REDIS).is_running
    assert [s for s in host.socket.get_listening_sockets() if s.endswith(f":{SHOP_PORT}")] == []
    assert host.run(f"id {SHOP}").rc != 0


def test_removing_a_project_leaves_the_other_running_untouched(host, shop_removed):
    assert shop_removed["after"] == shop_removed["before"]
    out = run_ok(host, f"{NAME}-manage", "run_task", "demo.tasks.add", "2", "3", "--timeout", "60")
    assert json.loads(out.strip().splitlines()[-1]) == 5
