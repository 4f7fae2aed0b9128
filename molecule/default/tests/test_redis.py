"""Redis as the broker: running, persistent, loopback only, refusing anonymous clients."""

import pytest
from conftest import running_conf

REDIS = "redis-server.service"


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
