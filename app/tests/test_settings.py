"""Unit tests: settings come from the environment and fail clearly when misconfigured."""

import os
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from proj.env import load_default_env_file, load_env_file, parse_bool, parse_database_url

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "proj" / "settings.py"
SECRET = "s" * 20 + "e" * 20 + "c" * 20


def load_settings(monkeypatch, **env) -> dict:
    """Execute proj/settings.py afresh with exactly ``env`` as the environment."""
    environ = {"DJANGO_ENV_FILE": "", **env}
    monkeypatch.setattr(os, "environ", environ)
    return runpy.run_path(str(SETTINGS_FILE))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" On ", True),
        ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
    ],
)  # fmt: skip
def test_debug_flag_accepts_common_boolean_spellings(monkeypatch, raw, expected):
    assert parse_bool("DJANGO_DEBUG", raw) is expected
    assert (
        load_settings(monkeypatch, DJANGO_DEBUG=raw, DJANGO_SECRET_KEY=SECRET)["DEBUG"] is expected
    )


def test_debug_is_off_by_default(monkeypatch):
    assert load_settings(monkeypatch, DJANGO_SECRET_KEY=SECRET)["DEBUG"] is False


def test_debug_rejects_unknown_value_with_clear_error(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match=r"DJANGO_DEBUG must be a boolean.*'maybe'"):
        load_settings(monkeypatch, DJANGO_DEBUG="maybe", DJANGO_SECRET_KEY=SECRET)


def test_missing_secret_key_without_debug_is_an_error(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="Set DJANGO_SECRET_KEY"):
        load_settings(monkeypatch)


def test_debug_mode_runs_without_secret_key(monkeypatch):
    conf = load_settings(monkeypatch, DJANGO_DEBUG="true")
    assert conf["SECRET_KEY"].startswith("django-insecure-")
    assert conf["SECURE_SSL_REDIRECT"] is False


def test_production_defaults(monkeypatch):
    conf = load_settings(monkeypatch, DJANGO_SECRET_KEY=SECRET)
    assert conf["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1"]
    assert conf["SECURE_SSL_REDIRECT"] is True
    assert conf["SECURE_REDIRECT_EXEMPT"] == [r"^health/$"]
    assert conf["SESSION_COOKIE_SECURE"] and conf["CSRF_COOKIE_SECURE"]
    assert conf["SECURE_HSTS_SECONDS"] > 0
    assert conf["TIME_ZONE"] == "UTC"
    assert conf["STATIC_ROOT"] == SETTINGS_FILE.parent.parent / "staticfiles"
    db = conf["DATABASES"]["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(SETTINGS_FILE.parent.parent / "db.sqlite3")
    assert "django_celery_beat" in conf["INSTALLED_APPS"] and "demo" in conf["INSTALLED_APPS"]


def test_celery_reliability_defaults(monkeypatch):
    conf = load_settings(monkeypatch, DJANGO_SECRET_KEY=SECRET)
    assert conf["CELERY_BROKER_URL"] == "redis://localhost:6379/0"
    assert conf["CELERY_RESULT_BACKEND"] == "redis://localhost:6379/0"
    assert conf["CELERY_TASK_ACKS_LATE"] is True
    assert conf["CELERY_TASK_REJECT_ON_WORKER_LOST"] is True
    assert conf["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    assert conf["CELERY_TASK_SOFT_TIME_LIMIT"] == 300
    assert conf["CELERY_TASK_TIME_LIMIT"] == 360
    assert conf["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 3600}
    assert conf["CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS"] == {"visibility_timeout": 3600}
    assert conf["CELERY_ACCEPT_CONTENT"] == ["json"]
    assert conf["CELERY_TASK_SERIALIZER"] == conf["CELERY_RESULT_SERIALIZER"] == "json"
    assert conf["CELERY_BEAT_SCHEDULER"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert conf["CELERY_RESULT_EXPIRES"] == 86400
    assert conf["CELERY_HEARTBEAT_INTERVAL"] == 10
    assert conf["HEALTH_HEARTBEAT_MAX_AGE"] == 30


def test_celery_settings_are_overridable_from_env(monkeypatch):
    conf = load_settings(
        monkeypatch,
        DJANGO_SECRET_KEY=SECRET,
        CELERY_BROKER_URL="amqp://guest:guest@mq:5672//",
        CELERY_TASK_ACKS_LATE="false",
        CELERY_WORKER_PREFETCH_MULTIPLIER="4",
        CELERY_HEARTBEAT_INTERVAL="5",
    )
    assert conf["CELERY_RESULT_BACKEND"] == "rpc://"
    assert conf["CELERY_TASK_ACKS_LATE"] is False
    assert conf["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 4
    assert conf["HEALTH_HEARTBEAT_MAX_AGE"] == 15


def test_visibility_timeout_not_above_hard_time_limit_is_an_error(monkeypatch):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        load_settings(
            monkeypatch,
            DJANGO_SECRET_KEY=SECRET,
            CELERY_TASK_TIME_LIMIT="600",
            CELERY_VISIBILITY_TIMEOUT="600",
        )
    message = str(excinfo.value)
    assert "CELERY_VISIBILITY_TIMEOUT (600s)" in message
    assert "CELERY_TASK_TIME_LIMIT (600s)" in message
    assert "raise CELERY_VISIBILITY_TIMEOUT" in message


def test_visibility_timeout_is_not_checked_for_amqp_broker(monkeypatch):
    conf = load_settings(
        monkeypatch,
        DJANGO_SECRET_KEY=SECRET,
        CELERY_BROKER_URL="amqp://mq//",
        CELERY_VISIBILITY_TIMEOUT="10",
    )
    assert conf["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 10}


def test_sqlite_url_with_absolute_path():
    db = parse_database_url("sqlite:////var/lib/proj/db.sqlite3")
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == "/var/lib/proj/db.sqlite3"
    assert db["OPTIONS"] == {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
    }


def test_sqlite_url_with_relative_path_is_relative_to_base_dir(tmp_path):
    assert parse_database_url("sqlite:///data/db.sqlite3", tmp_path)["NAME"] == str(
        tmp_path / "data" / "db.sqlite3"
    )
    assert parse_database_url("sqlite:///:memory:")["NAME"] == ":memory:"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_url(scheme):
    db = parse_database_url(f"{scheme}://app%40x:p%2Fss@db.example:5433/proj?sslmode=require")
    assert db == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "proj",
        "USER": "app@x",
        "PASSWORD": "p/ss",
        "HOST": "db.example",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require", "connect_timeout": 3},
    }


def test_postgres_url_without_port_or_password():
    db = parse_database_url("postgresql://app@localhost/proj")
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == ("app", "", "localhost", "")


@pytest.mark.parametrize(
    "url", ["mysql://u:p@h/db", "postgresql://u:p@h:5432/", "sqlite://relative.db"]
)
def test_bad_database_urls_are_rejected(url):
    with pytest.raises(ImproperlyConfigured):
        parse_database_url(url)


def test_env_file_parsing_and_no_override(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# comment\n"
        "\n"
        "DJANGO_DEBUG=true\n"
        "DJANGO_SECRET_KEY='quoted value # not a comment'\n"
        'export DATABASE_URL="sqlite:////tmp/x.sqlite3"\n'
        "DJANGO_ALLOWED_HOSTS=from-file\n"
    )
    environ = {"DJANGO_ALLOWED_HOSTS": "from-environment"}
    load_env_file(env_file, environ)
    assert environ == {
        "DJANGO_DEBUG": "true",
        "DJANGO_SECRET_KEY": "quoted value # not a comment",
        "DATABASE_URL": "sqlite:////tmp/x.sqlite3",
        "DJANGO_ALLOWED_HOSTS": "from-environment",
    }


def test_env_file_syntax_error_names_file_and_line(tmp_path):
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\nthis is not an assignment\n")
    with pytest.raises(ImproperlyConfigured, match=r"bad\.env:2"):
        load_env_file(env_file, {})


def test_dot_env_in_base_dir_is_loaded_when_django_env_file_unset(tmp_path):
    (tmp_path / ".env").write_text("DJANGO_TIME_ZONE=Europe/Berlin\n")
    environ: dict[str, str] = {}
    load_default_env_file(tmp_path, environ)
    assert environ == {"DJANGO_TIME_ZONE": "Europe/Berlin"}
    disabled = {"DJANGO_ENV_FILE": ""}
    load_default_env_file(tmp_path, disabled)
    assert disabled == {"DJANGO_ENV_FILE": ""}


def test_missing_django_env_file_is_an_error(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ENV_FILE"):
        load_default_env_file(tmp_path, {"DJANGO_ENV_FILE": str(tmp_path / "nope.env")})


def test_settings_load_django_env_file_without_overriding_environment(monkeypatch, tmp_path):
    env_file = tmp_path / "proj.env"
    env_file.write_text(
        f"DJANGO_SECRET_KEY={SECRET}\nDJANGO_TIME_ZONE=Europe/Paris\nDJANGO_ALLOWED_HOSTS=file\n"
    )
    conf = load_settings(
        monkeypatch, DJANGO_ENV_FILE=str(env_file), DJANGO_ALLOWED_HOSTS="a.example,b.example"
    )
    assert conf["SECRET_KEY"] == SECRET
    assert conf["TIME_ZONE"] == "Europe/Paris"
    assert conf["ALLOWED_HOSTS"] == ["a.example", "b.example"]
