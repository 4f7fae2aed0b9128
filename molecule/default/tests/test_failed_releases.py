"""A release that fails after validation leaves the running one serving: a migration that
fails, a requirement that cannot be installed, a project that does not import. Each run fails
naming the cause; `current` still points at the release that ran before, the files under
/etc/NAME are as they were, its services keep their processes, and a task still goes through."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import (
    NAME,
    add_on_the_host,
    ansible_playbook,
    configuration_checksums,
    main_pid,
)

CURRENT = f"/srv/{NAME}/current"
SERVICES = [f"{NAME}-web.service", f"{NAME}-beat.service"]
APP = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).parents[3])) / "app"

FAILING_MIGRATION = """from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("demo", "0003_slow_task_starts")]
    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]
"""


def break_migration(project: Path) -> None:
    (project / "demo" / "migrations" / "0099_fails.py").write_text(FAILING_MIGRATION)


def break_requirements(project: Path) -> None:
    with (project / "requirements.txt").open("a") as requirements:
        requirements.write("no-such-package-anywhere==1.0\n")


def break_import(project: Path) -> None:
    with (project / "proj" / "settings.py").open("a") as settings:
        settings.write('\nraise ImportError("these settings fail to import on purpose")\n')


CASES = {
    "failing-migration": (break_migration, "this migration fails on purpose"),
    "uninstallable-requirement": (break_requirements, "no-such-package-anywhere"),
    "project-that-does-not-import": (break_import, "these settings fail to import on purpose"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def failed_release(request, host):
    breaks, cause = CASES[request.param]
    project = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"broken-{request.param}"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(
        APP, project, ignore=shutil.ignore_patterns(".venv", "__pycache__", "db.sqlite3")
    )
    breaks(project)
    before = {
        "current": host.file(CURRENT).linked_to,
        "pids": {u: main_pid(host, u) for u in SERVICES},
        "configuration": configuration_checksums(host, f"/etc/{NAME}"),
    }
    extra = {"django_celery_source_path": str(project), "django_celery_release": request.param}
    result = ansible_playbook("-e", json.dumps(extra))
    after = {
        "current": host.file(CURRENT).linked_to,
        "pids": {u: main_pid(host, u) for u in SERVICES},
        "configuration": configuration_checksums(host, f"/etc/{NAME}"),
    }
    return {"result": result, "cause": cause, "before": before, "after": after}


def test_a_failed_release_fails_the_run_naming_its_cause(failed_release):
    result = failed_release["result"]
    assert result.returncode != 0
    assert failed_release["cause"] in result.stdout + result.stderr


def test_a_failed_release_leaves_current_the_configuration_and_the_services_as_they_were(
    failed_release,
):
    assert failed_release["after"] == failed_release["before"]


def test_a_failed_release_leaves_the_running_release_serving(host, failed_release):
    assert add_on_the_host(host, 40, 2) == 42
