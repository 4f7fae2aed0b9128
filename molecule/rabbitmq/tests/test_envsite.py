"""The twelve-factor envsite project (molecule/resources/envsite), deployed unedited on Debian 13
from inventory variables alone: its settings module reads every value from the environment and
fails at import without one, its requirements include two more files, psycopg2 is built from
source on the host, and its Celery app is taskqueue.app, not envsite.celery."""

from __future__ import annotations

import json

from conftest import front_door, run_ok

ENVSITE = "envsite"


def test_its_task_runs_through_the_deployed_worker(host):
    out = run_ok(
        host,
        f"/usr/local/bin/{ENVSITE}-manage",
        "shell",
        "-c",
        "from taskqueue.tasks import multiply; print(multiply.delay(6, 7).get(timeout=60))",
    )
    assert out.strip().splitlines()[-1] == "42"


def test_its_worker_runs_the_celery_app_module_the_inventory_names(host):
    command = run_ok(
        host, "systemctl", "show", "-p", "ExecStart", f"{ENVSITE}-worker@envsite.service"
    )
    assert "--app=taskqueue.app" in command


def test_its_page_answers_through_nginx_with_the_c_extension_built_on_the_host(host):
    answer = front_door(host, "envsite.test", "/", project=ENVSITE)
    body = json.loads(answer["body"])
    assert (answer["status"], body["psycopg2"].split()[0]) == (200, "2.9.13")
    assert body["extension"].endswith(".so") and "/venvs/" in body["extension"]


def test_the_names_it_reads_hold_the_values_the_role_computed(host):
    env = dict(
        line.split("=", 1)
        for line in run_ok(host, "cat", f"/etc/{ENVSITE}/{ENVSITE}.env").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert env["SECRET_KEY"] == env["DJANGO_SECRET_KEY"]
    assert env["BROKER_URL"] == env["CELERY_BROKER_URL"]
    assert env["CELERY_RESULT_URL"] == env["CELERY_RESULT_BACKEND"]
    assert "envsite.test" in env["ALLOWED_HOSTS"].strip("'").split(",")


def test_its_settings_come_from_the_environment_mail_and_cache_included(host):
    body = json.loads(front_door(host, "envsite.test", "/", project=ENVSITE)["body"])
    assert body["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert body["cache"] == "django.core.cache.backends.locmem.LocMemCache"


def test_its_admin_answers_at_the_url_the_environment_names(host):
    answer = front_door(host, "envsite.test", "/site-admin/login/", project=ENVSITE)
    assert answer["status"] == 200 and "csrfmiddlewaretoken" in answer["body"]


def test_its_deploy_checks_pass_at_warning_level(host):
    result = host.run(f"/usr/local/bin/{ENVSITE}-manage check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr
