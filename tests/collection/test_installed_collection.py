"""The collection as a user gets it, and its day-2 playbooks on a live host.

The collection is built from this repository (`ansible-galaxy collection build`), installed with
`ansible-galaxy collection install` into an empty collections path, by a fresh virtualenv that
holds ansible-core alone, together with its declared dependencies. Then its playbooks run, by
their collection names, from a minimal inventory in a directory outside the repository, against
a new Debian 12 systemd container. No Galaxy server is reachable from CI, so the dependencies are
installed from the copies the `ansible` package on PyPI bundles (the dev virtualenv's), the way
`ansible-galaxy collection install -r requirements.yml` would fetch them from Galaxy; the
container is reached with community.docker's connection plugin (users reach theirs over SSH).

Run by `scripts/test` as the stage "collection" (not part of the repository tests: it starts a
container and provisions it, about three minutes).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEV_BIN = Path(sys.executable).parent
# Where the `ansible` package (in the dev virtualenv) keeps the collections it bundles.
BUNDLED = Path(
    subprocess.check_output(
        [
            sys.executable,
            "-c",
            "import ansible_collections; print(ansible_collections.__path__[0])",
        ],
        text=True,
    ).strip()
)
# The test host (a container of that name is replaced).
CONTAINER = os.environ.get("DJANGO_CELERY_COLLECTION_HOST", "dc-collection")
IMAGE = os.environ.get("DJANGO_CELERY_IMAGE_BOOKWORM", "django-celery-systemd:bookworm")
NAME = "djangoapp"
UNITS = [f"{NAME}-worker@default.service", f"{NAME}-worker@slow.service"]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"


def pinned(package: str) -> str:
    """The version requirements-dev.txt pins for a package."""
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{package} is not pinned in requirements-dev.txt")


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def on_host(command: str, check: bool = True, timeout: float = 120) -> str:
    result = docker("exec", CONTAINER, "bash", "-c", command, check=False, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout.strip()


def manage_shell(code: str) -> str:
    """Run Python in the app's Django shell on the host; return its last output line."""
    out = on_host(f"{NAME}-manage shell -c {shlex.quote(code)} 2>/dev/null")
    return out.splitlines()[-1] if out else ""


def slow_report() -> dict:
    return json.loads(on_host(f"{NAME}-manage slow_task_report").splitlines()[-1])


def send_slow(task_id: str, seconds: float, queue: str = "slow") -> None:
    manage_shell(
        f"from demo.tasks import slow; slow.apply_async(({task_id!r}, {seconds}), queue={queue!r})"
    )


def wait_until(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def started(task_id: str) -> bool:
    return bool(
        manage_shell(
            "from demo.models import SlowTaskCompletion as S; "
            f"print(S.objects.filter(task_id={task_id!r}, starts__gte=1).exists())"
        )
        == "True"
    )


def runs(task_id: str) -> tuple[int, int]:
    """(starts, completed runs) of a slow task."""
    out = manage_shell(
        "from demo.models import SlowTaskCompletion as S; "
        f"o = S.objects.get(task_id={task_id!r}); print(o.starts, o.runs)"
    )
    starts, completed = out.split()
    return int(starts), int(completed)


def unit_property(unit: str, name: str) -> str:
    return on_host(f"systemctl show -p {name} --value {unit}")


def changed_count(output: str) -> int:
    match = re.search(r"collection\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory outside the repository: the user's own project."""
    path = tmp_path_factory.mktemp("user-project")
    assert ROOT not in path.parents
    return path


@pytest.fixture(scope="module")
def artifact(workdir) -> Path:
    subprocess.run(
        [
            DEV_BIN / "ansible-galaxy",
            "collection",
            "build",
            "--output-path",
            workdir / "dist",
            ROOT,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (tarball,) = (workdir / "dist").glob("*.tar.gz")
    return tarball


@pytest.fixture(scope="module")
def venv(workdir) -> Path:
    path = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run(
        [
            path / "bin/pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"ansible-core=={pinned('ansible-core')}",
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def collections(workdir, venv, artifact) -> Path:
    path = workdir / "collections"
    dependencies = [BUNDLED / name.replace(".", "/") for name in GALAXY["dependencies"]]
    # community.docker for the connection to the container, with the one collection it needs.
    connection = [
        BUNDLED / "community/docker",
        BUNDLED / "community/library_inventory_filtering_v1",
    ]
    result = subprocess.run(
        [
            venv / "bin/ansible-galaxy",
            "collection",
            "install",
            "--offline",
            "-p",
            path,
            artifact,
            *dependencies,
            *connection,
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=user_env(venv, path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def user_env(venv: Path, collections_path: Path) -> dict:
    """A shell with the fresh virtualenv first and none of this repository's Ansible settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(
        PATH=f"{venv / 'bin'}:{env['PATH']}",
        ANSIBLE_COLLECTIONS_PATH=str(collections_path),
        # Only the collections path above: not the dev virtualenv's bundled collections.
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return env


@pytest.fixture(scope="module")
def inventory(workdir) -> Path:
    """The smallest inventory that runs everything on one host, as the README shows it."""
    path = workdir / "inventory.yml"
    hosts = {
        "collection": {"ansible_connection": "community.docker.docker", "ansible_host": CONTAINER}
    }
    group_vars = {
        "django_celery_source_path": str(ROOT / "app"),
        # Test hosts cannot verify PyPI's certificate (see ../shared/ENVIRONMENT.md): the
        # controller downloads the wheels and ships them.
        "django_celery_pip_mode": "wheelhouse",
        # Its own: CI runs this stage beside the default scenario, which fills the usual one.
        "django_celery_wheelhouse_dir": str(
            Path.home() / ".cache" / "django_celery" / "wheelhouse-collection"
        ),
        "django_celery_post_deploy_commands": [["setup_periodic_tasks"]],
        "django_celery_worker_pools": [
            {"name": "default", "queues": ["celery"]},
            {"name": "slow", "queues": ["slow"], "concurrency": 1},
        ],
    }
    path.write_text(
        yaml.safe_dump(
            {"all": {"children": {"django_celery": {"hosts": hosts, "vars": group_vars}}}}
        )
    )
    return path


@pytest.fixture(scope="module")
def host():
    """A new Debian 12 systemd container, with the molecule scenarios' settings."""
    scenario = yaml.safe_load((ROOT / "molecule/default/molecule.yml").read_text())
    platform = scenario["platforms"][0]
    caps = [arg for cap in platform["capabilities"] for arg in ("--cap-add", cap)]
    docker("rm", "-f", CONTAINER, check=False)
    docker(
        "run",
        "-d",
        "--name",
        CONTAINER,
        "--hostname",
        "collection",
        "--cgroupns",
        "host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--cap-drop",
        "ALL",
        *caps,
        IMAGE,
        "/lib/systemd/systemd",
    )
    state = wait_until(
        lambda: on_host("systemctl is-system-running", check=False) in ("running", "degraded"), 60
    )
    assert state, on_host("systemctl --failed", check=False)
    yield CONTAINER
    docker("rm", "-f", CONTAINER, check=False)


@pytest.fixture(scope="module")
def play(venv, collections, inventory, workdir, host):
    """Run one of the collection's playbooks by its collection name, from the user's directory."""

    def run(playbook: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [venv / "bin/ansible-playbook", "-i", inventory, f"{FQCN}.{playbook}", *args],
            capture_output=True,
            text=True,
            cwd=workdir,
            env=user_env(venv, collections),
            timeout=900,
        )

    return run


@pytest.fixture(scope="module")
def provisioned(play):
    return play("site")


@pytest.fixture(scope="module")
def rerun(provisioned, play):
    assert provisioned.returncode == 0, provisioned.stdout[-4000:]
    return play("site")


# --- the artifact and the install -----------------------------------------------------------


def test_the_artifact_holds_the_role_the_plugins_and_the_playbooks(artifact):
    names = set(tarfile.open(artifact).getnames())
    for expected in [
        "roles/django_celery/tasks/main.yml",
        "plugins/modules/django_celery_files.py",
        "plugins/filter/django_celery.py",
        "playbooks/site.yml",
        "playbooks/rollback.yml",
        "meta/runtime.yml",
        "LICENSE",
        "CHANGELOG.rst",
    ]:
        assert expected in names, sorted(names)


def test_the_artifact_leaves_out_the_app_the_tests_and_the_lab(artifact):
    names = tarfile.open(artifact).getnames()
    left_in = [
        n
        for n in names
        if n.split("/")[0]
        in {"app", "molecule", "tests", "bench", "scripts", ".collections", ".ci", "site.yml"}
        or n.startswith("inventory/lab")
    ]
    assert left_in == []


def test_the_fresh_virtualenv_holds_ansible_core_and_no_bundled_collections(venv):
    frozen = subprocess.check_output([venv / "bin/pip", "freeze"], text=True).lower()
    assert f"ansible-core=={pinned('ansible-core')}" in frozen
    assert not re.search(r"^ansible==", frozen, re.M), frozen
    assert not list((venv / "lib").glob("python*/site-packages/ansible_collections"))


def test_galaxy_installs_the_collection_and_its_declared_dependencies(collections):
    installed = {f"{p.parent.name}.{p.name}" for p in collections.glob("ansible_collections/*/*")}
    assert installed >= {FQCN, *GALAXY["dependencies"]}, installed


# --- the rollout from the installed collection ---------------------------------------------


def test_the_collections_site_playbook_provisions_a_blank_host(provisioned):
    assert provisioned.returncode == 0, provisioned.stdout[-4000:] + provisioned.stderr[-2000:]


def test_the_provisioned_host_runs_a_task_through_the_broker(provisioned):
    assert on_host(f"{NAME}-manage run_task demo.tasks.add 2 3 --timeout 60") == "5"


def test_the_run_reports_the_overcommit_setting_a_container_cannot_make(provisioned):
    # vm.overcommit_memory is the kernel's: the container sees its host's value, read-only.
    unset = on_host("cat /proc/sys/vm/overcommit_memory") != "1"
    assert ("vm.overcommit_memory is" in provisioned.stdout) == unset


def test_a_second_run_of_the_collections_playbook_changes_nothing(rerun):
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert changed_count(rerun.stdout) == 0, rerun.stdout[-4000:]


# --- restart_workers -----------------------------------------------------------------------


# --- day-2 playbooks ----------------------------------------------------------------------
# restart_workers, drain and resume run on the cluster scenario's fleet
# (molecule/cluster/tests/test_day2_operations.py); rollback, rotate_secrets and remove_project
# below.


def test_drain_naming_no_host_is_refused_before_any_change(rerun, play):
    result = play("drain")
    assert result.returncode != 0
    assert "Name the hosts to drain with -e django_celery_drain_hosts=" in result.stdout
    assert all(unit_property(unit, "ActiveState") == "active" for unit in UNITS)


# --- a code-only release reloads gunicorn: no request fails --------------------------------

# Runs on the host until /var/tmp/loop.stop appears (or 300 s): GET the admin login page from
# gunicorn as fast as one client can, and count answers, HTTP errors and connection errors.
REQUEST_LOOP = r"""
import json, os, time, urllib.error, urllib.request
counts = {"requests": 0, "ok": 0, "http_errors": 0, "connection_errors": 0}
deadline = time.monotonic() + 300
while not os.path.exists("/var/tmp/loop.stop") and time.monotonic() < deadline:
    counts["requests"] += 1
    try:
        # As a TLS-terminating proxy sends it (the app redirects plain HTTP to HTTPS).
        request = urllib.request.Request(
            "http://127.0.0.1:8000/admin/login/", headers={"X-Forwarded-Proto": "https"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            counts["ok" if answer.status == 200 else "http_errors"] += 1
    except urllib.error.HTTPError:
        counts["http_errors"] += 1
    except OSError as error:
        counts["connection_errors"] += 1
        counts.setdefault("first_error", repr(error))
json.dump(counts, open("/var/tmp/loop.json", "w"))
"""


@pytest.fixture(scope="module")
def reloaded(rerun, play):
    """Release 2, the same code and requirements as release 1, deployed under a request loop."""
    web = f"{NAME}-web.service"
    pid = unit_property(web, "MainPID")
    on_host("rm -f /var/tmp/loop.stop /var/tmp/loop.json")
    docker("exec", "-d", CONTAINER, "python3", "-c", REQUEST_LOOP)
    time.sleep(2)
    result = play("site", "-e", "django_celery_release=2")
    time.sleep(2)
    on_host("touch /var/tmp/loop.stop")
    assert wait_until(lambda: on_host("test -s /var/tmp/loop.json && echo y", check=False), 30)
    counts = json.loads(on_host("cat /var/tmp/loop.json"))
    print(f"request loop during the redeploy to release 2: {counts}")
    workers = on_host(f"pgrep -P {unit_property(web, 'MainPID')}").split()
    return {
        "result": result,
        "counts": counts,
        "pid_before": pid,
        "pid_after": unit_property(web, "MainPID"),
        "worker_dirs": {on_host(f"readlink /proc/{w}/cwd") for w in workers},
    }


def test_a_code_only_release_reloads_gunicorn_instead_of_restarting_it(reloaded):
    assert reloaded["result"].returncode == 0, reloaded["result"].stdout[-4000:]
    assert reloaded["pid_after"] == reloaded["pid_before"]


def test_after_the_reload_gunicorn_serves_the_new_release(reloaded):
    assert reloaded["worker_dirs"] == {f"/srv/{NAME}/releases/2/src"}, reloaded["worker_dirs"]


def test_no_request_fails_while_a_release_goes_live(reloaded):
    counts = reloaded["counts"]
    assert counts["requests"] > 20, counts
    assert (counts["http_errors"], counts["connection_errors"]) == (0, 0), counts


# --- rollback ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rolled_back(reloaded, play):
    # A release that fails before going live (its post-deploy command does not exist): its
    # directory is the newest, and rollback must not pick it.
    broken = play(
        "site",
        "-e",
        json.dumps(
            {
                "django_celery_release": "broken",
                "django_celery_post_deploy_commands": [["no_such_command"]],
            }
        ),
    )
    assert broken.returncode != 0, broken.stdout[-3000:]
    assert on_host(f"test -d /srv/{NAME}/releases/broken && echo kept") == "kept"
    before = on_host(f"readlink /srv/{NAME}/current")
    result = play("rollback")
    return {"before": before, "result": result, "after": on_host(f"readlink /srv/{NAME}/current")}


def test_rollback_switches_current_to_the_release_that_ran_before_not_the_newest(rolled_back):
    assert rolled_back["result"].returncode == 0, rolled_back["result"].stdout[-4000:]
    assert (rolled_back["before"], rolled_back["after"]) == (
        f"/srv/{NAME}/releases/2",
        f"/srv/{NAME}/releases/1",
    )


def test_rollback_names_both_releases(rolled_back):
    assert "rolling back from 2 to 1" in rolled_back["result"].stdout


def test_rollback_runs_no_migration(rolled_back):
    output = rolled_back["result"].stdout
    assert "TASK [django_celery : Check for unapplied migrations]" not in output
    assert "TASK [django_celery : Apply migrations]" not in output


def test_rollback_restarts_the_workers_on_the_old_code(rolled_back):
    for unit in UNITS:
        pid = unit_property(unit, "MainPID")
        assert on_host(f"readlink /proc/{pid}/cwd").startswith(f"/srv/{NAME}/releases/1/")
    assert on_host(f"{NAME}-manage run_task demo.tasks.add 3 4 --timeout 60") == "7"


def test_rollback_refuses_a_release_given_on_the_command_line(rolled_back, play):
    # Current is 1, so the previous release is 2: naming 1 asks for something else.
    result = play("rollback", "-e", "django_celery_release=1")
    assert result.returncode != 0
    assert "rollback.yml picks the previous release itself" in result.stdout
    assert on_host(f"readlink /srv/{NAME}/current") == f"/srv/{NAME}/releases/1"


# --- rotate_secrets ------------------------------------------------------------------------

ENV_FILE = f"/etc/{NAME}/{NAME}.env"
# New secrets with the characters that break quoting: quotes, $, #, spaces, non-ASCII.
NEW_SECRETS = {
    "django_celery_broker_password": "n3w 'broker' $pass #é",
    "django_celery_secret_key": 'r0tated-key-"quoted" $HOME #not-a-comment é-' + "x" * 40,
}


def running_env(name: str) -> str:
    return on_host(f'set -a; . {ENV_FILE}; printf %s "${name}"')


def broker_accepts(url: str) -> bool:
    code = f"import redis, sys; redis.Redis.from_url({url!r}).ping()"
    python = f"/srv/{NAME}/current/venv/bin/python"
    return docker("exec", CONTAINER, python, "-c", code, check=False).returncode == 0


@pytest.fixture(scope="module")
def rotated(rolled_back, play, workdir):
    """New broker password and SECRET_KEY, rolled out while requests and tasks flow."""
    before = {"url": running_env("CELERY_BROKER_URL"), "key": running_env("DJANGO_SECRET_KEY")}
    token = manage_shell("from django.core import signing; print(signing.dumps('signed before'))")
    secrets = workdir / "new-secrets.yml"
    secrets.write_text(yaml.safe_dump(NEW_SECRETS, allow_unicode=True))
    secrets.chmod(0o600)
    on_host("rm -f /var/tmp/loop.stop /var/tmp/loop.json")
    docker("exec", "-d", CONTAINER, "python3", "-c", REQUEST_LOOP)
    tasks = [f"rotation-{n}" for n in range(20)]
    for task_id in tasks:
        send_slow(task_id, 0.5)
    result = play("rotate_secrets", "-e", f"@{secrets}")
    on_host("touch /var/tmp/loop.stop")
    assert wait_until(lambda: on_host("test -s /var/tmp/loop.json && echo y", check=False), 30)
    counts = json.loads(on_host("cat /var/tmp/loop.json"))
    print(f"request loop during the secret rotation: {counts}")
    done = wait_until(lambda: set(tasks) <= set(slow_report()["ids"]), 120)
    again = play("rotate_secrets", "-e", f"@{secrets}")
    return {
        "result": result,
        "again": again,
        "before": before,
        "token": token,
        "counts": counts,
        "tasks": tasks,
        "done": done,
    }


def test_rotate_secrets_succeeds(rotated):
    assert rotated["result"].returncode == 0, rotated["result"].stdout[-4000:]


def test_rotate_secrets_writes_the_new_values_into_the_services_environment(rotated):
    assert running_env("DJANGO_SECRET_KEY") == NEW_SECRETS["django_celery_secret_key"]
    assert rotated["before"]["url"] != running_env("CELERY_BROKER_URL")


def test_after_the_rotation_the_broker_refuses_the_old_password(rotated):
    assert not broker_accepts(rotated["before"]["url"])


def test_after_the_rotation_the_broker_accepts_the_new_password(rotated):
    assert broker_accepts(running_env("CELERY_BROKER_URL"))


def test_a_value_signed_with_the_old_secret_key_still_verifies(rotated):
    code = f"from django.core import signing; print(signing.loads({rotated['token']!r}))"
    assert manage_shell(code) == "signed before"


def test_no_task_sent_during_the_rotation_is_lost(rotated):
    assert rotated["done"], slow_report()
    report = slow_report()
    assert report["duplicated"] == 0, report


def test_no_request_fails_during_the_rotation(rotated):
    counts = rotated["counts"]
    assert counts["requests"] > 20, counts
    assert (counts["http_errors"], counts["connection_errors"]) == (0, 0), counts


def test_the_rotation_prints_no_secret(rotated):
    output = rotated["result"].stdout + rotated["result"].stderr
    leaked = [v for v in [*NEW_SECRETS.values(), rotated["before"]["key"]] if v in output]
    assert leaked == []


def test_a_second_rotation_with_the_same_secrets_changes_nothing(rotated):
    assert rotated["again"].returncode == 0, rotated["again"].stdout[-4000:]
    assert changed_count(rotated["again"].stdout) == 0, rotated["again"].stdout[-4000:]


# --- remove_project ------------------------------------------------------------------------


def test_remove_project_without_its_name_is_refused(rotated, play):
    result = play("remove_project")
    assert result.returncode != 0
    assert f"confirm with -e django_celery_remove={NAME}" in result.stdout
    assert unit_property(UNITS[0], "ActiveState") == "active"


def test_remove_project_removes_its_services_and_files(rotated, play):
    result = play("remove_project", "-e", f"django_celery_remove={NAME}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert unit_property(UNITS[0], "LoadState") == "not-found"
    assert on_host(f"test -e /srv/{NAME} && echo left || echo gone") == "gone"


def teardown_module():
    if shutil.which("docker"):
        docker("rm", "-f", CONTAINER, check=False)
