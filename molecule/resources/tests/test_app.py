"""The app's user, code, configuration and secrets on the host."""

from conftest import NAME


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


def test_deploy_settings_override_debug_to_false(host):
    out = host.run(
        f"{NAME}-manage shell -c 'from django.conf import settings; print(settings.DEBUG)'"
    )
    assert out.rc == 0 and out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_app_user_cannot_write_the_code(host):
    result = host.run(f"runuser -u {NAME} -- touch /srv/{NAME}/current/src/manage.py")
    assert result.rc != 0 and "Permission denied" in result.stderr


def test_current_release_link_points_at_a_release(host):
    current = host.file(f"/srv/{NAME}/current")
    assert current.is_symlink and current.linked_to.startswith(f"/srv/{NAME}/releases/")


def test_migrations_are_all_applied(host):
    assert host.run(f"{NAME}-manage migrate --check").rc == 0


def test_static_files_are_collected(host):
    assert host.file(f"/var/lib/{NAME}/static/admin/css/base.css").is_file
