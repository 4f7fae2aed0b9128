"""Three projects on one host, side by side (molecule/default/converge.yml deploys them in turn):
the sample app on the host's main Redis, the shop test project (requirements: only Django and
Celery; settings: a foreign broker, SECRET_KEY and DEBUG = True hardcoded, a beat schedule; its
own app with a migration) and twin, a second copy of the sample app whose secrets hold quotes,
'$', '#', '\\', '%', '@', ':', '/', spaces and non-ASCII characters, each on a Redis of its own.

Then twin and shop are deployed again, in the other order, each as a new release (Molecule's
idempotence stage has already run the sample app's play after both: changed=0). Before and
after every step: all three run tasks through their own workers, beat fires for each, each
project's broker credentials open its own Redis only, and the step restarted no service of the
other projects. Then the shop project is removed: the other two keep running and nothing of it
is left.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from conftest import NAME, ansible_playbook, front_door, run_ok, sha256_hex, wait_for

PROJECTS_DIR = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).parents[1]))
PROJECT_VARS = {
    name: yaml.safe_load((PROJECTS_DIR / "projects" / f"{name}.yml").read_text())
    for name in ("shop", "twin")
}
TWIN = PROJECT_VARS["twin"]
SHOP = "shop"
# Each project's Redis port, and the units of its Redis.
PORTS = {NAME: 6379, SHOP: 6380, "twin": 6381}
REDIS_UNITS = {NAME: "redis-server.service", SHOP: "redis-server@shop.service"}
REDIS_UNITS["twin"] = "redis-server@twin.service"
PROJECTS = list(PORTS)
# A task through each project's own workers, and what it must return.
ROUND_TRIPS = {
    NAME: ("from demo.tasks import add; print(add.delay(20, 22).get(timeout=60))", "42"),
    "twin": ("from demo.tasks import add; print(add.delay(40, 2).get(timeout=60))", "42"),
    SHOP: (
        "from shop.tasks import ping; print(ping.apply_async(queue='shop').get(timeout=60))",
        "pong from ",
    ),
}
# How many times beat has fired for each project: the sample app's heartbeat, the shop's ticks.
HEARTBEATS = (
    "from demo.models import Heartbeat; "
    "print(sum(Heartbeat.objects.values_list('count', flat=True)))"
)
BEAT_COUNTS = {
    NAME: HEARTBEATS,
    "twin": HEARTBEATS,
    SHOP: "from shop.models import Tick; print(Tick.objects.count())",
}


def shell(host, project: str, code: str) -> str:
    """The last line `manage.py shell -c CODE` printed for a project, or its error."""
    result = host.run(f"{project}-manage shell -c {shlex.quote(code)}")
    if result.rc != 0:
        return f"exit {result.rc}: {result.stderr.strip()[-300:]}"
    return result.stdout.strip().splitlines()[-1]


def redis_as(host, project: str, port: int, *args: str) -> str:
    """redis-cli with the broker user and password of a project (read on the host from its
    environment file, so no secret reaches the command line), against a Redis port: what it
    printed, errors included."""
    command = " ".join(shlex.quote(a) for a in args)
    script = (
        f"set -a; . /etc/{project}/{project}.env; "
        "url=${CELERY_BROKER_URL#redis://}; creds=${url%@*}; "
        f"exec redis-cli --no-auth-warning -h 127.0.0.1 -p {port} "
        '--user "${creds%%:*}" --pass "$(python3 -c "import sys, urllib.parse; '
        'print(urllib.parse.unquote(sys.argv[1]))" "${creds#*:}")" '
        f"{command}"
    )
    result = host.run(f"sh -c {shlex.quote(script)}")
    return (result.stdout + result.stderr).strip()


def service_pids(host, projects) -> dict:
    """Main PIDs of the long-running services (web, beat, worker pools, Redis) of projects."""
    pids = {}
    for project in projects:
        units = run_ok(
            host, "systemctl", "list-units", "--plain", "--no-legend", f"{project}-*.service"
        )
        names = [line.split()[0] for line in units.splitlines() if line.strip()]
        names = [n for n in names if re.search(r"-(web|beat|worker@[^.]+)\.service$", n)]
        for unit in [*names, REDIS_UNITS[project]]:
            pids[unit] = host.service(unit).systemd_properties["MainPID"]
    return pids


def beat_counts(host, projects) -> dict:
    return {p: shell(host, p, BEAT_COUNTS[p]) for p in projects}


def beat_fires(host, projects) -> dict:
    """Whether beat fires for each project: its count of periodic runs grows within 30 s."""
    first = beat_counts(host, projects)
    grown = {p: False for p in projects}

    def all_grown() -> bool:
        for project, now in beat_counts(host, [p for p in projects if not grown[p]]).items():
            grown[project] = (
                now.isdigit() and first[project].isdigit() and int(now) > int(first[project])
            )
        return all(grown.values())

    wait_for(all_grown, timeout=30)
    return grown


def credentials_matrix(host) -> dict:
    """PING with each project's credentials on each project's Redis: {(whose, which): reply}."""
    return {
        (whose, which): redis_as(host, whose, port, "ping")
        for whose in PROJECTS
        for which, port in PORTS.items()
    }


def state_of_the_host(host) -> dict:
    return {
        "tasks": {p: shell(host, p, ROUND_TRIPS[p][0]) for p in PROJECTS},
        "beat": beat_fires(host, PROJECTS),
        "credentials": credentials_matrix(host),
    }


def assert_all_three_work(state: dict) -> None:
    tasks = state["tasks"]
    assert {p: tasks[p].startswith(ROUND_TRIPS[p][1]) for p in PROJECTS} == dict.fromkeys(
        PROJECTS, True
    ), tasks
    assert state["beat"] == dict.fromkeys(PROJECTS, True)


def assert_credentials_open_only_their_own_redis(matrix: dict) -> None:
    for (whose, which), reply in matrix.items():
        if whose == which:
            assert reply == "PONG", (whose, reply)
        else:
            # redis-cli reports the refused AUTH, then the PING refused without it.
            assert "WRONGPASS" in reply and "PONG" not in reply, (whose, which, reply)


@pytest.fixture(scope="module")
def after_converge(host) -> dict:
    return state_of_the_host(host)


@pytest.fixture(scope="module")
def redeployed_in_another_order(host, after_converge) -> list[dict]:
    """twin, then shop, each as a new release: each run's result, the other projects' PIDs
    before and after, and the state of the host after it."""
    steps = []
    for project in ("twin", SHOP):
        others = [p for p in PROJECTS if p != project]
        extra = {**PROJECT_VARS[project], "django_celery_release": "2"}
        before = service_pids(host, others)
        result = ansible_playbook("-e", json.dumps(extra))
        steps.append(
            {
                "project": project,
                "result": result,
                "others_before": before,
                "others_after": service_pids(host, others),
                "state": state_of_the_host(host),
            }
        )
    return steps


def test_with_three_projects_deployed_each_runs_its_tasks_and_beat_fires_for_each(after_converge):
    assert_all_three_work(after_converge)


def test_with_three_projects_deployed_each_ones_credentials_open_only_its_own_redis(
    after_converge,
):
    assert_credentials_open_only_their_own_redis(after_converge["credentials"])


def test_each_redis_holds_only_its_own_projects_user(host):
    users = {
        path: re.findall(r"^user (\S+)", host.file(path).content_string, re.M)
        for path in (
            "/etc/redis/users.acl",
            "/etc/redis/users-shop.acl",
            "/etc/redis/users-twin.acl",
        )
    }
    assert users == {
        "/etc/redis/users.acl": ["default", NAME],
        "/etc/redis/users-shop.acl": ["default", SHOP],
        "/etc/redis/users-twin.acl": ["default", "twin"],
    }


def test_each_projects_own_redis_listens_on_loopback_only(host):
    for project in (SHOP, "twin"):
        assert host.service(REDIS_UNITS[project]).is_running, project
        listening = [
            s for s in host.socket.get_listening_sockets() if s.endswith(f":{PORTS[project]}")
        ]
        assert listening and all(s.startswith(("tcp://127.", "tcp://::1")) for s in listening), (
            project,
            listening,
        )


def test_redeploying_each_project_in_another_order_succeeds(redeployed_in_another_order):
    for step in redeployed_in_another_order:
        result = step["result"]
        assert result.returncode == 0, (step["project"], (result.stdout + result.stderr)[-3000:])


def test_redeploying_one_project_restarts_no_service_of_the_others(redeployed_in_another_order):
    for step in redeployed_in_another_order:
        assert step["others_after"] == step["others_before"], step["project"]


def test_after_every_redeploy_all_three_projects_run_their_tasks_and_beat(
    redeployed_in_another_order,
):
    for step in redeployed_in_another_order:
        assert_all_three_work(step["state"])


def test_after_every_redeploy_each_projects_credentials_open_only_its_own_redis(
    redeployed_in_another_order,
):
    for step in redeployed_in_another_order:
        assert_credentials_open_only_their_own_redis(step["state"]["credentials"])


def test_the_redeployed_projects_run_their_new_release(host, redeployed_in_another_order):
    links = {p: host.file(f"/srv/{p}/current").linked_to for p in ("twin", SHOP)}
    assert links == {"twin": "/srv/twin/releases/2", SHOP: "/srv/shop/releases/2"}


# --- A project the role has never seen -------------------------------------------------------


def test_the_role_adds_what_it_runs_to_a_project_that_lists_only_django_and_celery(host):
    """The shop project's requirements list neither gunicorn, Redis's client (Celery's redis
    extra) nor django-celery-beat; its virtualenv has the role's pins of each."""
    requirements = host.file(f"/srv/{SHOP}/current/src/requirements.txt").content_string.lower()
    assert not re.search(
        r"^(gunicorn|redis|packaging|django-celery-beat)\b|celery\[", requirements, re.M
    )
    listing = run_ok(
        host, f"/srv/{SHOP}/current/venv/bin/python", "-m", "pip", "list", "--format=json"
    )
    versions = {p["name"].lower(): p["version"] for p in json.loads(listing)}
    found = {name: versions.get(name) for name in ("gunicorn", "redis", "django-celery-beat")}
    assert found == {"gunicorn": "27.0.1", "redis": "8.1.0", "django-celery-beat": "2.9.0"}, (
        versions
    )
    assert "packaging" in versions


def test_the_database_scheduler_runs_a_project_whose_settings_do_not_list_its_app(host):
    """shop's INSTALLED_APPS lacks django_celery_beat: the deploy settings add it, its tables
    exist, and beat scheduled the project's own hardcoded entry from them."""
    settings = host.file(f"/srv/{SHOP}/current/src/shop/settings.py").content_string
    assert "django_celery_beat" not in settings.split("INSTALLED_APPS", 1)[1].split("]", 1)[0]
    code = (
        "from django_celery_beat.models import PeriodicTask; "
        "print(sorted(PeriodicTask.objects.values_list('task', flat=True)))"
    )
    assert "shop.tasks.tick" in shell(host, SHOP, code)


def test_the_projects_own_migration_was_applied(host):
    out = run_ok(host, f"{SHOP}-manage", "showmigrations", "shop")
    assert "[X] 0001_initial" in out, out


def test_the_shop_web_answers_through_nginx_and_the_gunicorn_the_role_added(host):
    assert host.service(f"{SHOP}-web.service").is_running
    answer = front_door(host, "shop.test", "/", project=SHOP)
    assert (answer["status"], answer["body"].strip()) == (200, "shop")


# --- Values with every character an operator may type (twin) ---------------------------------


def process_environment(host, unit: str) -> dict:
    pid = host.service(unit).systemd_properties["MainPID"]
    raw = run_ok(host, "base64", "-w0", f"/proc/{pid}/environ")
    pairs = base64.b64decode(raw).decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@pytest.mark.parametrize(
    "unit", ["twin-worker@default.service", "twin-web.service", "twin-beat.service"]
)
def test_special_characters_reach_each_service_exactly(host, unit):
    env = process_environment(host, unit)
    expected = {
        "DJANGO_SECRET_KEY": TWIN["django_celery_secret_key"],
        "TWIN_ODD_VALUE": TWIN["django_celery_extra_env"]["TWIN_ODD_VALUE"],
    }
    assert {key: env.get(key) for key in expected} == expected


def test_special_characters_reach_the_manage_wrapper_and_django_exactly(host):
    code = (
        "import json, os; from django.conf import settings; "
        "print(json.dumps([settings.SECRET_KEY, os.environ['TWIN_ODD_VALUE']]))"
    )
    assert json.loads(shell(host, "twin", code)) == [
        TWIN["django_celery_secret_key"],
        TWIN["django_celery_extra_env"]["TWIN_ODD_VALUE"],
    ]


def test_a_broker_password_with_special_characters_is_the_one_redis_checks(host):
    """The ACL holds the SHA-256 of exactly the configured password, and the percent-encoded
    URL the services use decodes to it (the round trips above went through it)."""
    acl = host.file("/etc/redis/users-twin.acl").content_string
    assert f"user twin on #{sha256_hex(TWIN['django_celery_broker_password'])} " in acl
    code = (
        "from urllib.parse import unquote, urlsplit; from django.conf import settings; "
        "print(unquote(urlsplit(settings.CELERY_BROKER_URL).password) == "
        f"{TWIN['django_celery_broker_password']!r})"
    )
    assert shell(host, "twin", code) == "True"


NEW_TWIN_SECRETS = {
    "django_celery_broker_password": "n3w 'pass' \"$USER\" #1 \\ %2F @:/ ö 犬",
    "django_celery_secret_key": "n3w-k'e\"y $SHELL #c \\ %41 @h:p/q ö 犬 " + "abcdefghij" * 4,
}


def secret_forms(value: str) -> set[str]:
    """The ways a secret could appear in output: as it is, quoted for sh, percent-encoded."""
    return {value, shlex.quote(value), quote(value, safe=""), quote(value)}


@pytest.fixture(scope="module")
def twin_in_check_mode(host, redeployed_in_another_order):
    """twin as its last run had it (release 2) but with a new broker password and SECRET_KEY,
    in check mode with --diff: check mode reports the change and does not apply it."""
    extra = {**TWIN, "django_celery_release": "2", **NEW_TWIN_SECRETS}
    return ansible_playbook("--check", "--diff", "-e", json.dumps(extra))


def test_check_mode_reports_a_new_secret_without_applying_it(host, twin_in_check_mode):
    result = twin_in_check_mode
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert int(re.findall(r"changed=(\d+)", result.stdout)[0]) > 0, result.stdout[-3000:]
    acl = host.file("/etc/redis/users-twin.acl").content_string
    assert sha256_hex(TWIN["django_celery_broker_password"]) in acl


def test_check_mode_with_diff_prints_no_secret_old_or_new(twin_in_check_mode):
    output = twin_in_check_mode.stdout + twin_in_check_mode.stderr
    secrets = [TWIN["django_celery_broker_password"], TWIN["django_celery_secret_key"]]
    secrets += list(NEW_TWIN_SECRETS.values())
    leaked = [
        (i, form)
        for i, value in enumerate(secrets)
        for form in secret_forms(value)
        if form in output
    ]
    assert leaked == []


# --- Another project on a Redis that already serves one -------------------------------------


@pytest.fixture(scope="module")
def fourth_project_on_the_main_redis(host):
    """Another project with the role's Redis and no instance of its own."""
    shop = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "..", "resources", "shop")
    extra = {
        **PROJECT_VARS[SHOP],
        "django_celery_name": "blog",
        "django_celery_source_path": shop,
        "django_celery_redis_instance": "",
        "django_celery_redis_port": 6379,
        "django_celery_web_bind": "127.0.0.1:8003",
    }
    acl = host.file("/etc/redis/users.acl").content_string
    result = ansible_playbook("-e", json.dumps(extra))
    return {"result": result, "acl_before": acl}


def test_a_project_sharing_the_main_redis_is_refused_naming_the_variable(
    fourth_project_on_the_main_redis,
):
    result = fourth_project_on_the_main_redis["result"]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "already serves another project" in output and "django_celery_redis_instance" in output


def test_a_refused_project_changes_nothing(host, fourth_project_on_the_main_redis):
    result = fourth_project_on_the_main_redis["result"]
    assert re.findall(r"changed=(\d+)", result.stdout) == ["0"], result.stdout[-2000:]
    assert not host.file("/etc/blog").exists
    assert (
        host.file("/etc/redis/users.acl").content_string
        == fourth_project_on_the_main_redis["acl_before"]
    )


# --- Removing a project (last: the shop project is gone afterwards) ---------------------------


@pytest.fixture(scope="module")
def shop_removed(host, redeployed_in_another_order):
    """django_celery_state: absent for the shop project, twice (the second must change nothing)."""
    extra = json.dumps({**PROJECT_VARS[SHOP], "django_celery_state": "absent"})
    others = [NAME, "twin"]
    before = service_pids(host, others)
    first = ansible_playbook("-e", extra)
    again = ansible_playbook("-e", extra)
    return {"first": first, "again": again, "before": before, "after": service_pids(host, others)}


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
    assert not host.service(REDIS_UNITS[SHOP]).is_running
    assert [s for s in host.socket.get_listening_sockets() if s.endswith(f":{PORTS[SHOP]}")] == []
    assert host.run(f"id {SHOP}").rc != 0


def test_removing_a_project_restarts_no_service_of_the_others(shop_removed):
    assert shop_removed["after"] == shop_removed["before"]


def test_after_removing_a_project_the_other_two_run_their_tasks_and_beat(host, shop_removed):
    tasks = {p: shell(host, p, ROUND_TRIPS[p][0]) for p in (NAME, "twin")}
    assert tasks == {NAME: "42", "twin": "42"}
    assert beat_fires(host, [NAME, "twin"]) == {NAME: True, "twin": True}
