"""The app's user, code, configuration and secrets on the host."""

import shlex

from conftest import (
    NAME,
    POOLS,
    controller_secret,
    main_pid,
    manage,
    run_ok,
    sha256_hex,
    unit_of,
)


def test_app_user_has_no_login_shell(host):
    assert host.user(NAME).shell == "/usr/sbin/nologin"


def test_app_user_is_a_system_account(host):
    assert host.user(NAME).uid < 1000


def test_env_file_is_readable_only_by_root_and_the_app_group(host):
    env = host.file(f"/etc/{NAME}/{NAME}.env")
    assert (env.user, env.group, env.mode) == ("root", NAME, 0o640)


def test_env_file_holds_the_secret_key(host):
    content = host.file(f"/etc/{NAME}/{NAME}.env").content_string
    secret = [line for line in content.splitlines() if line.startswith("DJANGO_SECRET_KEY=")]
    assert len(secret) == 1 and len(secret[0].split("=", 1)[1].strip("'")) >= 50


def test_deploy_settings_override_the_projects_debug(host):
    """The sample's settings turn DEBUG on from DJANGO_DEBUG=true; the deploy settings module
    (DJANGO_SETTINGS_MODULE of every service) must still give DEBUG = False."""
    code = "import proj.settings as p; from django.conf import settings as s; "
    code += "print(p.DEBUG, s.DEBUG)"
    release = f"/srv/{NAME}/current"
    script = (
        f"set -a; . /etc/{NAME}/{NAME}.env; set +a; export DJANGO_DEBUG=true; "
        f"cd {release}/src && exec runuser -u {NAME} -- {release}/venv/bin/python "
        f"manage.py shell -c {shlex.quote(code)}"
    )
    out = host.run(f"sh -c {shlex.quote(script)}")
    assert out.rc == 0, out.stderr
    project_debug, deployed_debug = out.stdout.strip().splitlines()[-1].split()
    assert (project_debug, deployed_debug) == ("True", "False")


def test_running_services_have_the_secret_key_kept_on_the_controller(host):
    secret = controller_secret("secret_key")
    units = [unit_of(p) for p in POOLS] + [f"{NAME}-beat.service", f"{NAME}-web.service"]
    wrong = []
    for unit in units:
        environ = run_ok(host, "cat", f"/proc/{main_pid(host, unit)}/environ").split("\0")
        if f"DJANGO_SECRET_KEY={secret}" not in environ:
            wrong.append(unit)
    assert wrong == [], "these services run with another SECRET_KEY (or none)"


def test_django_settings_have_the_secret_key_kept_on_the_controller(host):
    code = "import hashlib; from django.conf import settings; "
    code += "print(hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())"
    out = manage(host, "shell", "-c", code).strip().splitlines()[-1]
    assert out == sha256_hex(controller_secret("secret_key"))


def test_app_user_cannot_write_the_code(host):
    result = host.run(f"runuser -u {NAME} -- touch /srv/{NAME}/current/src/manage.py")
    assert result.rc != 0 and "Permission denied" in result.stderr


def test_current_release_link_points_at_a_release(host):
    current = host.file(f"/srv/{NAME}/current")
    assert current.is_symlink and current.linked_to.startswith(f"/srv/{NAME}/releases/")


def test_migrations_are_all_applied(host):
    assert host.run(f"{NAME}-manage migrate --check").rc == 0


def test_static_files_are_collected(host):
    assert host.file(f"/srv/{NAME}/static/admin/css/base.css").is_file
