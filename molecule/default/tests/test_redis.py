"""Redis as the broker: running, persistent, loopback only, refusing anonymous clients."""

import shlex
from urllib.parse import urlsplit

import pytest
from conftest import (
    broker_credentials,
    configured,
    controller_secret,
    env_file,
    redis_cli,
    running_conf,
    send_task,
    sha256_hex,
    wait_for,
)

REDIS = "redis-server.service"
URL_KEYS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def test_redis_is_active_and_enabled(host):
    assert host.service(REDIS).is_running and host.service(REDIS).is_enabled


def test_redis_refuses_an_unauthenticated_client(host):
    out = host.run("redis-cli -h 127.0.0.1 -p 6379 ping")
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_refuses_a_wrong_password(host):
    out = host.run(
        "redis-cli -h 127.0.0.1 --user djangoapp --pass wrong-password --no-auth-warning ping"
    )
    assert "WRONGPASS" in out.stdout + out.stderr


def test_redis_listens_on_loopback_only(host):
    sockets = host.socket.get_listening_sockets()
    redis = [s for s in sockets if s.endswith(":6379")]
    assert redis and all(s.startswith(("tcp://127.", "tcp://::1")) for s in redis), redis


@pytest.mark.parametrize(
    "directive", ["appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"]
)
def test_redis_config_keeps_queued_tasks(host, directive):
    assert directive in host.file("/etc/redis/redis.conf").content_string.splitlines()


def test_redis_acl_file_holds_no_plaintext_password(host):
    acl = host.file("/etc/redis/users.acl")
    secrets = host.file("/etc/djangoapp/djangoapp.env").content_string
    url = next(line for line in secrets.splitlines() if line.startswith("CELERY_BROKER_URL="))
    password = url.split(":")[2].split("@")[0]
    assert acl.mode == 0o640 and password not in acl.content_string


def test_running_worker_visibility_timeout_exceeds_the_hard_time_limit(host, settings):
    conf = running_conf(host, {"name": "default"})
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]


def test_redis_config_turns_protected_mode_on(host):
    assert "protected-mode yes" in host.file("/etc/redis/redis.conf").content_string.splitlines()


def test_redis_acl_file_stores_exactly_the_sha256_of_the_app_password(host):
    user, password = broker_credentials(host)
    rules = [line.split() for line in host.file("/etc/redis/users.acl").content_string.splitlines()]
    app = [rule for rule in rules if rule[:2] == ["user", user]]
    secrets = [token for token in app[0] if token[:1] in ("#", ">", "<", "!")] if app else []
    assert secrets == [f"#{sha256_hex(password)}"]


@pytest.mark.parametrize(
    "command",
    [
        ["CONFIG", "GET", "protected-mode"],
        ["SHUTDOWN", "ABORT"],
        ["ACL", "LIST"],
        ["SLOWLOG", "GET", "1"],
        ["FLUSHDB"],
        ["FLUSHALL"],
        ["KEYS", "no-such-key-*"],
        ["INFO", "server"],
    ],
    ids=lambda argv: " ".join(argv[:1]),
)
def test_redis_refuses_admin_and_dangerous_commands_to_the_app_user(host, command):
    # On database 15, which the role leaves unused: should FLUSHDB ever be allowed again, it
    # empties nothing the other tests need (FLUSHALL would, and fails the suite loudly).
    out = redis_cli(host, *command, db=15)
    assert "NOPERM" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("password", ["", "default", "lock"])
def test_redis_default_user_cannot_log_in(host, password):
    """Neither an empty password, nor "default", nor the lock written in the ACL file (the
    lock is the hash of an unknown password, not a password) logs in as the default user."""
    if password == "lock":
        password = controller_secret("redis_default_user_lock")
    out = host.run(f"redis-cli AUTH default {shlex.quote(password)}")
    assert "WRONGPASS" in out.stdout + out.stderr


def test_running_worker_uses_separate_redis_databases_for_queue_and_results(host):
    conf = running_conf(host, {"name": "default"})
    conf = {
        "CELERY_BROKER_URL": conf["broker_url"],
        "CELERY_RESULT_BACKEND": conf["result_backend"],
    }
    dbs = [urlsplit(conf[key]).path for key in URL_KEYS]
    assert dbs[0] != dbs[1], dbs


def test_task_results_land_in_the_result_database_only(host):
    env = env_file(host)
    broker_db, result_db = (int(urlsplit(env[k]).path.strip("/")) for k in URL_KEYS)
    task_id = send_task(host, "demo.tasks.add", [20, 22], queue="celery")
    key = f"celery-task-meta-{task_id}"
    assert wait_for(lambda: _exists(host, key, result_db), timeout=30), "no result stored"
    assert not _exists(host, key, broker_db)


def _exists(host, key: str, db: int) -> bool:
    return redis_cli(host, "EXISTS", key, db=db).stdout.strip() == "1"


def test_running_worker_gives_results_the_configured_visibility_timeout(host):
    conf = running_conf(host, {"name": "default"})
    timeout = conf["result_backend_transport_options"]["visibility_timeout"]
    assert timeout == configured("django_celery_visibility_timeout")
