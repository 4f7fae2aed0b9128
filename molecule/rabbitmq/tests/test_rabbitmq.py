"""RabbitMQ as the broker: running, no guest, the app confined to its vhost, loopback only."""

import json

from rabbitmq_helpers import RABBIT, broker_url, connect, with_vhost


def test_rabbitmq_is_active_and_enabled(host):
    assert host.service(RABBIT).is_running and host.service(RABBIT).is_enabled


def test_rabbitmq_has_no_guest_user(host):
    users = host.check_output("rabbitmqctl --quiet list_users")
    assert "guest" not in users.split() and "djangoapp" in users.split()


def test_rabbitmq_refuses_the_guest_login(host):
    result = connect(host, "amqp://guest:guest@127.0.0.1:5672//")
    assert result.rc != 0 and "ACCESS_REFUSED" in result.stderr


def test_rabbitmq_refuses_a_wrong_password(host):
    result = connect(host, "amqp://djangoapp:wrong-password@127.0.0.1:5672/djangoapp")
    assert result.rc != 0 and "ACCESS_REFUSED" in result.stderr


def test_app_user_has_rights_on_its_vhost_only(host):
    perms = host.check_output("rabbitmqctl --quiet list_user_permissions djangoapp")
    vhosts = [line.split()[0] for line in perms.splitlines()[1:] if line.strip()]
    assert vhosts == ["djangoapp"]


def test_app_user_cannot_open_another_vhost(host):
    result = connect(host, with_vhost(broker_url(host), "/"))
    assert result.rc != 0 and "NOT_ALLOWED" in result.stderr, result.stderr[-500:]


def test_app_user_has_no_management_tags(host):
    users = json.loads(host.check_output("rabbitmqctl --quiet list_users --formatter=json"))
    tags = {user["user"]: user["tags"] for user in users}
    assert tags["djangoapp"] == [], tags


def test_no_management_plugin_is_enabled(host):
    # Without a management plugin there is no HTTP API for the app's user to try: nothing on
    # 15672, and only AMQP (5672) and Erlang distribution (25672) listen for RabbitMQ, besides
    # the Prometheus plugin monitoring enables (on loopback: test_monitoring.py), which has no
    # login and serves figures only.
    enabled = host.check_output("rabbitmq-plugins --quiet list --enabled --minimal")
    assert enabled.split() == ["rabbitmq_prometheus"], enabled
    http = [s for s in host.socket.get_listening_sockets() if s.endswith(":15672")]
    assert not http, http


def test_rabbitmq_listens_for_amqp_on_loopback_only(host):
    amqp = [s for s in host.socket.get_listening_sockets() if s.endswith(":5672")]
    assert amqp and all(s.startswith(("tcp://127.", "tcp://::1")) for s in amqp), amqp


def test_erlang_port_mapper_and_distribution_listen_on_loopback_only(host):
    erlang = [s for s in host.socket.get_listening_sockets() if s.endswith((":4369", ":25672"))]
    assert len(erlang) == 2 and all(s.startswith("tcp://127.") for s in erlang), erlang


def test_rabbitmq_stops_before_erlangs_port_mapper(host):
    """At shutdown rabbitmqctl stop needs the port mapper to reach the node (the role's drop-in;
    test_zzzzz_service_logs.py reads the log after the fault suite's reboot)."""
    after = host.check_output("systemctl show --property=After --value rabbitmq-server.service")
    assert "epmd.service" in after.split(), after


def test_rabbitmq_consumer_timeout_exceeds_the_hard_time_limit(host, settings):
    out = host.check_output("rabbitmqctl eval 'application:get_env(rabbit, consumer_timeout).'")
    timeout_ms = int(out.strip().strip("{}").split(",")[1])
    assert timeout_ms > settings["django_celery_task_time_limit"] * 1000


def test_code_was_deployed_from_the_git_repository(host):
    head = host.check_output("git -C /srv/djangoapp/current/src rev-parse HEAD")
    assert head == host.check_output("git -C /opt/app-repo rev-parse main")
