"""The role's own modules (plugins/modules), their logic called directly on a
temporary directory as the user running the tests; the Molecule scenarios run them on hosts."""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
LIBRARY = PLUGINS / "modules"
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def load(name, path=None, as_name=None):
    spec = importlib.util.spec_from_file_location(as_name or name, path or LIBRARY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if as_name:
        sys.modules[as_name] = module
    spec.loader.exec_module(module)
    return module


# As Ansible ships it to the host with the modules that import it.
load(
    "owner",
    PLUGINS / "module_utils/django_celery_owner.py",
    as_name="ansible_collections.django_celery.fleet.plugins.module_utils.django_celery_owner",
)
files = load("django_celery_files")
directories = load("django_celery_directories")
services = load("django_celery_services")
reload = load("django_celery_reload")


def entry(path, content="a = 1\n", mode="0640", **extra):
    return dict(dest=str(path), content=content, owner=USER, group=GROUP, mode=mode, **extra)


def test_a_new_file_is_written_with_its_mode(tmp_path):
    target = tmp_path / "settings.py"
    assert files.ensure(entry(target), check=False) == (None, True)
    assert target.read_text() == "a = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_an_unchanged_file_is_left_alone(tmp_path):
    target = tmp_path / "settings.py"
    files.ensure(entry(target), check=False)
    before = target.stat().st_mtime_ns
    assert files.ensure(entry(target), check=False) is None
    assert target.stat().st_mtime_ns == before


def test_a_mode_change_alone_keeps_the_content_and_reports_no_content_change(tmp_path):
    target = tmp_path / "settings.py"
    files.ensure(entry(target), check=False)
    assert files.ensure(entry(target, mode="0600"), check=False) == (b"a = 1\n", False)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_check_mode_reports_the_change_and_writes_nothing(tmp_path):
    target = tmp_path / "settings.py"
    files.ensure(entry(target), check=False)
    assert files.ensure(entry(target, content="a = 2\n"), check=True) == (b"a = 1\n", True)
    assert target.read_text() == "a = 1\n"


def test_a_file_failing_validation_never_replaces_the_live_one(tmp_path):
    target = tmp_path / "settings.py"
    files.ensure(entry(target), check=False)
    bad = entry(target, content="a = (\n", validate="python3 -m py_compile %s")
    with pytest.raises(ValueError, match="validation with"):
        files.ensure(bad, check=False)
    assert target.read_text() == "a = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.py"]


def test_a_file_passing_validation_replaces_the_old_one(tmp_path):
    target = tmp_path / "settings.py"
    files.ensure(entry(target), check=False)
    good = entry(target, content="a = 3\n", validate="python3 -m py_compile %s")
    assert files.ensure(good, check=False) == (b"a = 1\n", True)
    assert target.read_text() == "a = 3\n"


def test_a_directory_in_place_of_a_file_is_an_error(tmp_path):
    (tmp_path / "settings.py").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        files.ensure(entry(tmp_path / "settings.py"), check=False)


def directory(path, mode="0750"):
    return {"path": str(path), "owner": USER, "group": GROUP, "mode": mode}


def test_directories_are_created_in_order_with_their_mode(tmp_path):
    parent, child = tmp_path / "srv", tmp_path / "srv/releases"
    assert directories.ensure(directory(parent, "0755"), check=False)[0] == "absent"
    assert directories.ensure(directory(child), check=False)[0] == "absent"
    assert stat.S_IMODE(child.stat().st_mode) == 0o750


def test_a_directory_as_wanted_is_no_change_and_a_wrong_mode_is_fixed(tmp_path):
    target = tmp_path / "etc"
    directories.ensure(directory(target), check=False)
    assert directories.ensure(directory(target), check=False) is None
    os.chmod(target, 0o777)
    before, after = directories.ensure(directory(target), check=False)
    assert (before.split()[-1], after.split()[-1]) == ("0777", "0750")
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_check_mode_creates_no_directory(tmp_path):
    assert directories.ensure(directory(tmp_path / "new"), check=True)[0] == "absent"
    assert not (tmp_path / "new").exists()


SHOW = """Id=app-worker@default.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=app-beat.service
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled

Id=app-unacked.timer
LoadState=not-found
ActiveState=inactive
UnitFileState=
"""


def test_systemctl_show_output_is_split_per_unit():
    shown = services.parse_show(SHOW)
    assert [unit["Id"] for unit in shown] == [
        "app-worker@default.service",
        "app-beat.service",
        "app-unacked.timer",
    ]
    assert shown[1]["ActiveState"] == "inactive"


def unit(name, state, enabled):
    return {"name": name, "state": state, "enabled": enabled}


def test_a_unit_in_the_wanted_state_needs_no_command():
    shown = services.parse_show(SHOW)[0]
    assert services.actions(unit("app-worker@default.service", "started", True), shown) == []


def test_a_stopped_disabled_unit_to_run_is_enabled_and_started():
    shown = services.parse_show(SHOW)[1]
    assert services.actions(unit("app-beat.service", "started", True), shown) == [
        ["enable", "app-beat.service"],
        ["start", "app-beat.service"],
    ]


def test_a_running_unit_to_stop_is_stopped_and_disabled():
    shown = services.parse_show(SHOW)[0]
    assert services.actions(unit("app-worker@default.service", "stopped", False), shown) == [
        ["disable", "app-worker@default.service"],
        ["stop", "app-worker@default.service"],
    ]


def test_restarted_always_restarts():
    shown = services.parse_show(SHOW)[0]
    assert services.actions(unit("app-worker@default.service", "restarted", True), shown) == [
        ["restart", "app-worker@default.service"]
    ]


def test_a_missing_unit_is_an_error_except_in_check_mode_or_when_it_should_be_off():
    missing = services.parse_show(SHOW)[2]
    with pytest.raises(ValueError, match="not found"):
        services.actions(unit("app-unacked.timer", "started", True), missing)
    assert services.actions(unit("app-unacked.timer", "started", True), missing, check=True) == [
        ["enable", "app-unacked.timer"],
        ["start", "app-unacked.timer"],
    ]
    assert services.actions(unit("app-unacked.timer", "stopped", False), missing) == []


# --- django_celery_reload: reload gunicorn, or restart it when a reload would not do ---------

VENV = "/srv/app/venvs/abc"


def test_reload_when_only_code_or_settings_changed():
    assert reload.decide(10, 1000.0, {"/etc/app/app.env": 900.0}, VENV, VENV)[0] == "reload"


def test_restart_a_service_that_is_not_running():
    assert reload.decide(0, 0.0, {}, "", VENV) == ("restart", "it is not running")


def test_restart_when_the_environment_file_changed_after_the_start():
    action, reason = reload.decide(10, 1000.0, {"/etc/app/app.env": 1000.5}, VENV, VENV)
    assert (action, "/etc/app/app.env" in reason) == ("restart", True)


def test_restart_when_the_release_needs_another_virtualenv():
    action, reason = reload.decide(10, 1000.0, {}, VENV, "/srv/app/venvs/def")
    assert (action, "/srv/app/venvs/def" in reason) == ("restart", True)


def test_the_start_time_of_this_process_is_now_or_earlier():
    import time

    assert 0 < time.time() - reload.process_start(os.getpid()) < 3600


def test_the_virtualenv_of_a_process_is_the_one_of_the_interpreter_it_was_started_with():
    # As systemd starts gunicorn: the interpreter by its absolute path (the script's shebang).
    import subprocess

    code = "import time; print('started', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "started\n"  # it runs the interpreter by now
        assert reload.process_venv(child.pid) == os.path.realpath(
            os.path.dirname(os.path.dirname(sys.executable))
        )
    finally:
        child.kill()
        child.wait()
