"""Bad input stops the role before anything on a host changes, with a message saying what to fix.

Each case runs the role against hosts that cannot be reached (facts are not gathered): the
play must fail in validation, change nothing and never try to reach the host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "tests" / "validation" / "playbook.yml"

CASES = {
    "beat_lock_timeout_below_four_seconds": (
        {
            "django_celery_beat_lock": True,
            "django_celery_database_engine": "postgresql",
            "django_celery_beat_lock_timeout": 2,
        },
        r"django_celery_beat_lock_timeout of at least 4 s \(it is\s+2",
    ),
    "monitoring_with_an_external_broker": (
        {
            "django_celery_monitoring_enabled": True,
            "django_celery_broker": "external",
            "django_celery_broker_url": "amqp://app:secret@broker.example:5672/app",
        },
        r"monitoring covers the role's own broker, Redis or a single-host RabbitMQ\s+"
        r"\(django_celery_broker is external, on 0 hosts",
    ),
    "monitoring_unacked_ratio_above_one": (
        {
            "django_celery_monitoring_enabled": True,
            "django_celery_monitoring_unacked_age_ratio": 1.5,
        },
        r"django_celery_monitoring_enabled is true but the monitoring settings do not fit.*"
        r"the ratios between 0 and 1",
    ),
    "monitoring_failure_window_shorter_than_two_scrapes": (
        {
            "django_celery_monitoring_enabled": True,
            "django_celery_monitoring_failure_window": 20,
        },
        r"django_celery_monitoring_failure_window at least two scrape intervals \(it is 20 s\)",
    ),
    "monitoring_flower_without_beat": (
        {"django_celery_monitoring_enabled": True, "django_celery_beat_enabled": False},
        r"Flower \(django_celery_monitoring_flower_enabled\)\s+runs on the beat host",
    ),
    "rabbitmq_queue_type_unknown": (
        {"django_celery_broker": "rabbitmq", "django_celery_rabbitmq_queue_type": "stream"},
        r"django_celery_rabbitmq_queue_type.*must be one of: classic, quorum.*stream",
    ),
    "rabbitmq_delivery_limit_zero": (
        {"django_celery_broker": "rabbitmq", "django_celery_rabbitmq_delivery_limit": 0},
        r"django_celery_rabbitmq_delivery_limit 1 or more \(it is 0\)",
    ),
    "rabbitmq_dead_letter_resend_too_soon": (
        {
            "django_celery_broker": "rabbitmq",
            "django_celery_rabbitmq_dead_letter_confirm_timeout_ms": 500,
        },
        r"django_celery_rabbitmq_dead_letter_confirm_timeout_ms\s+1000 ms or more \(it is 500\)",
    ),
    "rabbitmq_net_ticktime_too_short": (
        {"django_celery_broker": "rabbitmq", "django_celery_rabbitmq_net_ticktime": 2},
        r"django_celery_rabbitmq_net_ticktime must be 5 s or more \(it is 2\)",
    ),
    "rabbitmq_pool_consuming_the_dead_letter_queue": (
        {
            "django_celery_broker": "rabbitmq",
            "django_celery_worker_pools": [
                {"name": "default", "queues": ["celery", "dead_letter"]}
            ],
        },
        r"no\s+pool may consume the queue dead_letter",
    ),
    "unknown_broker": (
        {"django_celery_broker": "kafka"},
        r"django_celery_broker.*must be one of: redis, rabbitmq, external.*kafka",
    ),
    "concurrency_zero": (
        {"django_celery_worker_pools": [{"name": "default", "concurrency": 0}]},
        r"django_celery_worker_pools is invalid.*concurrency must be 1 or more "
        r"\(pools with less: default\)",
    ),
    "visibility_timeout_below_hard_time_limit": (
        {"django_celery_visibility_timeout": 300, "django_celery_task_time_limit": 360},
        r"django_celery_visibility_timeout \(300 s\) must be greater than "
        r"django_celery_task_time_limit \(360 s\)",
    ),
    "reclaim_min_age_below_10_seconds": (
        {"django_celery_reclaim_min_age": 5},
        r"django_celery_reclaim_interval \(60 s\) and django_celery_reclaim_min_age \(5 s\) "
        r"must each be 10 or more",
    ),
    "redis_instance_with_a_slash": (
        {"django_celery_redis_instance": "../etc"},
        r"django_celery_redis_instance \(\"../etc\"\) must be empty",
    ),
    "web_bind_not_an_address": (
        {"django_celery_web_bind": "not-an-address"},
        r"django_celery_web_bind \(\"not-an-address\"\) must be HOST:PORT",
    ),
    "web_bind_port_out_of_range": (
        {"django_celery_web_bind": "127.0.0.1:70000"},
        r"django_celery_web_bind \(\"127.0.0.1:70000\"\) must be HOST:PORT",
    ),
    "web_workers_zero": (
        {"django_celery_web_workers": 0},
        r"django_celery_web_workers \(0\) 1 or more",
    ),
    "redis_port_zero": (
        {"django_celery_redis_port": 0},
        r"Ports must be from 1 to 65535: django_celery_redis_port is not",
    ),
    "database_port_too_high": (
        {"django_celery_database_port": 65536},
        r"Ports must be from 1 to 65535: django_celery_database_port is not",
    ),
    "secret_key_of_spaces": (
        {"django_celery_secret_key": " " * 60},
        r"django_celery_secret_key must be at least 50 characters, not only spaces",
    ),
    "secret_key_too_short": (
        {"django_celery_secret_key": "short-secret"},
        r"django_celery_secret_key must be at least 50 characters",
    ),
    "secret_key_of_one_repeated_character": (
        {"django_celery_secret_key": "x" * 60},
        r"with at least 5 different characters",
    ),
    "secret_key_with_a_newline": (
        {"django_celery_secret_key": "k3y-" * 15 + "\nsecond-line"},
        r"django_celery_secret_key must be .* on one line",
    ),
    "broker_password_with_a_newline": (
        {"django_celery_broker_password": "first\nsecond"},
        r"django_celery_broker_password must be on one line",
    ),
    "database_password_with_a_newline": (
        {"django_celery_database_password": "first\r\nsecond"},
        r"django_celery_database_password must be on one line",
    ),
    "extra_env_name_with_a_space": (
        {"django_celery_extra_env": {"A B": "1"}},
        r"django_celery_extra_env: names must be .* \(bad: \[\"A B\"\]\)",
    ),
    "extra_env_name_starting_with_a_digit": (
        {"django_celery_extra_env": {"1ST": "1"}},
        r"\(bad: \[\"1ST\"\]\)",
    ),
    "extra_env_value_with_a_newline": (
        {"django_celery_extra_env": {"BANNER": "line one\nline two"}},
        r"values must be on one line \(with a newline: \[\"BANNER\"\]\)",
    ),
    "site_name_with_a_space": (
        {"django_celery_site_names": ["shop.example.com", "bad name"]},
        r"django_celery_site_names \(\"bad name\"\) must be host names",
    ),
    "certificate_without_its_key": (
        {"django_celery_tls_certificate_path": "/etc/letsencrypt/live/shop/fullchain.pem"},
        r"give a certificate with its key",
    ),
    "certificate_text_that_is_no_certificate": (
        {
            "django_celery_tls_certificate": "not a certificate",
            "django_celery_tls_certificate_key": "-----BEGIN PRIVATE KEY-----\nx\n",
        },
        r"the PEM text must\s+hold a certificate and a private key",
    ),
    "static_url_without_its_slashes": (
        {"django_celery_static_url": "static"},
        r"django_celery_static_url and django_celery_media_url \(\"static\"\) must be URL paths",
    ),
    "exported_name_of_an_unknown_value": (
        {"django_celery_env_names": {"secret_key": ["SECRET_KEY"], "mail_url": ["EMAIL_URL"]}},
        r"django_celery_env_names: its keys must be among .* \(unknown: mail_url\)",
    ),
    "exported_name_the_role_already_sets": (
        {"django_celery_env_names": {"broker_url": ["CELERY_BROKER_URL"]}},
        r"\(twice: CELERY_BROKER_URL\)",
    ),
    "exported_name_with_a_dash": (
        {"django_celery_env_names": {"secret_key": ["SECRET-KEY"]}},
        r"django_celery_env_names \(\"SECRET-KEY\"\) must be environment variable names",
    ),
    "allowed_host_with_a_space": (
        {"django_celery_allowed_hosts": ["shop.example.com", "bad host"]},
        r"django_celery_allowed_hosts entries must be host names .*\[\"bad host\"\] is not",
    ),
    "deployment_name_with_capitals": (
        {"django_celery_name": "My Shop"},
        r"django_celery_name 'My Shop' is not usable as a user and unit name",
    ),
    "no_release_kept": (
        {"django_celery_keep_releases": 0},
        r"django_celery_keep_releases must be 1 or more",
    ),
    "release_name_with_a_slash": (
        {"django_celery_release": "../v2"},
        r"django_celery_release a plain name",
    ),
    "git_source_without_a_repository": (
        {"django_celery_source": "git", "django_celery_git_repo": ""},
        r"django_celery_source is 'git' but its location is empty",
    ),
    "external_broker_url_without_a_scheme": (
        {"django_celery_broker": "external", "django_celery_broker_url": "localhost:6379"},
        r"django_celery_broker_url must be a redis://, rediss://, amqp:// or amqps:// URL",
    ),
    "redis_instance_on_the_main_redis_port": (
        {"django_celery_redis_instance": "shop"},
        r"An instance needs a django_celery_redis_port other than 6379",
    ),
    "duplicate_pool_names": (
        {"django_celery_worker_pools": [{"name": "io"}, {"name": "cpu"}, {"name": "io"}]},
        r"django_celery_worker_pools is invalid.*pool names must be unique\s+\(duplicates: io\)",
    ),
    "soft_time_limit_not_below_hard": (
        {"django_celery_task_soft_time_limit": 400, "django_celery_task_time_limit": 360},
        r"django_celery_task_soft_time_limit \(400\) must be lower than "
        r"django_celery_task_time_limit \(360\)",
    ),
    "non_loopback_broker_without_password": (
        {"django_celery_broker": "external", "django_celery_broker_url": "redis://10.9.8.7:6379/0"},
        r"django_celery_broker_url must be .* a broker that is\s+not on loopback needs credentials",
    ),
    "rabbitmq_consumer_timeout_below_hard_time_limit": (
        {"django_celery_broker": "rabbitmq", "django_celery_rabbitmq_consumer_timeout_ms": 60000},
        r"django_celery_rabbitmq_consumer_timeout_ms \(60000 ms\) must be\s+greater than "
        r"django_celery_task_time_limit",
    ),
    "queue_name_with_a_space": (
        {
            "django_celery_worker_pools": [
                {"name": "default", "queues": ["celery", "high priority"]}
            ]
        },
        r"django_celery_worker_pools queues \(\"high priority\"\) must be queue names",
    ),
    "worker_extra_arg_with_a_quote": (
        {
            "django_celery_worker_pools": [
                {"name": "default", "extra_args": ["--without-gossip", "-n 'x'"]}
            ]
        },
        r"django_celery_worker_pools extra_args \(\"-n 'x'\"\) must be one argument each",
    ),
    "app_module_with_a_semicolon": (
        {"django_celery_app_module": "proj; rm -rf /"},
        r"django_celery_app_module \(\"proj; rm -rf /\"\) must be a Python module path",
    ),
    "settings_module_with_a_quote": (
        {"django_celery_settings_module": 'proj.settings"'},
        r"django_celery_settings_module .* must be a Python module path",
    ),
    "wsgi_module_with_a_space": (
        {"django_celery_wsgi_module": "proj.wsgi: application"},
        r"django_celery_wsgi_module .* must be a Python module path and name",
    ),
    "broker_user_with_a_space": (
        {"django_celery_broker_user": "app user"},
        r"django_celery_broker_user \(\"app user\"\) must be a user name",
    ),
    "database_name_with_a_quote": (
        {"django_celery_database_name": "shop'db"},
        r"django_celery_database_name \(\"shop'db\"\) must be a PostgreSQL name",
    ),
    "database_user_too_long_for_its_alternate_login": (
        {"django_celery_database_user": "u" * 60},
        r"django_celery_database_user \(\"u{60}\"\) must be a PostgreSQL name of at most 59",
    ),
    "redis_maxmemory_not_a_size": (
        {"django_celery_redis_maxmemory": "lots"},
        r"django_celery_redis_maxmemory \(\"lots\"\) must be a size Redis reads",
    ),
    "redis_bind_not_an_address": (
        {"django_celery_redis_bind": ["127.0.0.1", "localhost"]},
        r"django_celery_redis_bind and django_celery_rabbitmq_bind \(\"localhost\"\) must be IPv4",
    ),
    "requirements_file_outside_the_project": (
        {"django_celery_requirements_file": "../../etc/requirements.txt"},
        r"django_celery_requirements_file .* must be a path inside the project",
    ),
    "pip_index_url_without_a_scheme": (
        {"django_celery_pip_index_url": "pypi.example.com/simple"},
        r"django_celery_pip_index_url, .* must be http\(s\):// URLs",
    ),
    "result_backend_with_a_space": (
        {"django_celery_result_backend": "redis://localhost:6379/ 1"},
        r"django_celery_broker_url and django_celery_result_backend .* must be URLs",
    ),
    "unknown_time_zone": (
        {"django_celery_time_zone": "Mars/Olympus_Mons"},
        r"django_celery_time_zone \(\"Mars/Olympus_Mons\"\) is not a time zone name",
    ),
    "pool_concurrency_not_a_number": (
        {"django_celery_worker_pools": [{"name": "default", "concurrency": "many"}]},
        r"argument 'concurrency' is of type str found in 'django_celery_worker_pools'",
    ),
}


def run_role(
    tmp_path: Path,
    extra_vars: dict,
    hosts: dict,
    groups: dict | None = None,
    facts: dict[str, dict] | None = None,
) -> subprocess.CompletedProcess:
    """The role's play against the hosts; `facts` ({host: {fact: value}}) are set first, by a
    play of set_fact (cacheable: into ansible_facts), as if gathered earlier in the run."""
    inventory = {
        "all": {
            "hosts": hosts,
            "children": {
                name: {"hosts": {host: {} for host in members}}
                for name, members in (groups or {}).items()
            },
        }
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )
    playbook = PLAYBOOK
    if facts:
        playbook = tmp_path / "with-facts.yml"
        plays = [
            {
                "name": f"Facts of {host}",
                "hosts": host,
                "gather_facts": False,
                "tasks": [{"ansible.builtin.set_fact": {**host_facts, "cacheable": True}}],
            }
            for host, host_facts in facts.items()
        ]
        plays.append({"ansible.builtin.import_playbook": str(PLAYBOOK)})
        playbook.write_text(json.dumps(plays))
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(tmp_path / "inventory.json"),
            str(playbook),
            "-e",
            f"@{tmp_path / 'vars.json'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def unreachable_host(**host_vars) -> dict:
    # Port 9 on loopback (discard): nothing answers, so a task that reaches for the host fails
    # as unreachable, which the assertions below would catch.
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": 9,
        "ansible_connection": "ssh",
        **host_vars,
    }


def fleet_hosts(*names: str) -> dict:
    """Unreachable hosts with private addresses: the broker and database addresses resolve
    without facts."""
    return {
        name: unreachable_host(django_celery_private_address=f"10.0.0.{index + 2}")
        for index, name in enumerate(names)
    }


def assert_failed_in_validation(result: subprocess.CompletedProcess, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert re.search(message, output, re.S), output[-3000:]
    recaps = re.findall(r"ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert recaps, output[-2000:]
    assert all(changed == "0" and unreachable == "0" for changed, unreachable, _ in recaps), output[
        -2000:
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_variables_fail_before_any_change_naming_the_variable(tmp_path, case):
    extra_vars, message = CASES[case]
    result = run_role(tmp_path, extra_vars, {"target": unreachable_host()})
    assert_failed_in_validation(result, message)


def test_two_beat_hosts_in_one_play_fail_before_any_change_naming_both(tmp_path):
    result = run_role(tmp_path, {}, {"web1": unreachable_host(), "web2": unreachable_host()})
    assert_failed_in_validation(
        result, r"2 hosts would run Celery beat \(web1, web2\).*django_celery_beat_enabled"
    )


def test_two_hosts_in_the_beat_group_without_the_beat_lock_fail_before_any_change(tmp_path):
    hosts = {name: unreachable_host() for name in ("w1", "w2", "web")}
    groups = {
        "django_celery_workers": ["w1", "w2"],
        "django_celery_web": ["web"],
        "django_celery_beat": ["w1", "w2"],
    }
    result = run_role(tmp_path, {"django_celery_beat_lock": False}, hosts, groups)
    assert_failed_in_validation(
        result, r"2 hosts would run Celery beat \(w1, w2\).*inventory group django_celery_beat"
    )


def test_two_beat_hosts_without_postgresql_fail_before_any_change_naming_the_beat_lock(tmp_path):
    """Two hosts in the beat group turn the beat lock on, which needs PostgreSQL (SQLite here)."""
    hosts = fleet_hosts("w1", "w2", "web")
    groups = {
        "django_celery_workers": ["w1", "w2"],
        "django_celery_web": ["web"],
        "django_celery_beat": ["w1", "w2"],
        "django_celery_broker": ["web"],
    }
    result = run_role(tmp_path, {}, hosts, groups)
    assert_failed_in_validation(
        result, r"django_celery_beat_lock \(beat on several hosts.*needs PostgreSQL"
    )


@pytest.mark.parametrize(
    ("broker", "count"), [("rabbitmq", 2), ("rabbitmq", 4), ("redis", 3)], ids=str
)
def test_a_broker_group_that_is_no_cluster_fails_before_any_change(tmp_path, broker, count):
    """RabbitMQ runs on one host or an odd number of three or more; Redis on one host."""
    brokers = [f"b{index}" for index in range(count)]
    hosts = fleet_hosts("w1", "web", *brokers)
    groups = {
        "django_celery_workers": ["w1"],
        "django_celery_web": ["web"],
        "django_celery_beat": ["w1"],
        "django_celery_broker": brokers,
    }
    result = run_role(tmp_path, {"django_celery_broker": broker}, hosts, groups)
    assert_failed_in_validation(
        result,
        rf"django_celery_broker_group; it has\s+{count}\), or, with django_celery_broker: rabbitmq",
    )


def test_a_fleet_without_a_beat_host_fails_before_any_change(tmp_path):
    hosts = {name: unreachable_host() for name in ("w1", "web")}
    groups = {
        "django_celery_workers": ["w1"],
        "django_celery_web": ["web"],
        "django_celery_beat": [],
    }
    result = run_role(tmp_path, {}, hosts, groups)
    assert_failed_in_validation(result, r"0 hosts would run Celery beat \(none\)")


def test_valid_variables_pass_validation_and_then_reach_for_the_host(tmp_path):
    """The control case: with good input, the same play gets past validation to the host."""
    result = run_role(tmp_path, {}, {"target": unreachable_host()})
    output = result.stdout + result.stderr
    assert "Check the number of releases kept" in output
    assert re.search(r"unreachable=1", output), output[-2000:]


def test_a_fleet_without_a_broker_host_fails_before_any_change(tmp_path):
    hosts = {name: unreachable_host() for name in ("w1", "web")}
    groups = {
        "django_celery_workers": ["w1"],
        "django_celery_web": ["web"],
        "django_celery_beat": ["w1"],
    }
    result = run_role(tmp_path, {}, hosts, groups)
    assert_failed_in_validation(
        result, r"needs exactly one host in\s+django_celery_broker \(django_celery_broker_group"
    )


def test_three_rabbitmq_hosts_and_two_beat_hosts_on_postgresql_pass_validation(tmp_path):
    """The control case of the two above: a cluster of three and a beat standby get past
    validation to the hosts."""
    hosts = fleet_hosts("w1", "w2", "b1", "b2", "b3", "db")
    groups = {
        "django_celery_workers": ["w1", "w2"],
        "django_celery_beat": ["w1", "w2"],
        "django_celery_broker": ["b1", "b2", "b3"],
        "django_celery_database": ["db"],
    }
    result = run_role(tmp_path, {"django_celery_broker": "rabbitmq"}, hosts, groups)
    output = result.stdout + result.stderr
    assert "Check the number of releases kept" in output, output[-3000:]
    assert re.search(r"unreachable=1", output), output[-2000:]


def test_a_rabbitmq_cluster_on_two_debian_releases_fails_before_any_change(tmp_path):
    """RabbitMQ 4.0 (Debian 13) cannot join a 3.10 cluster (Debian 12)."""
    hosts = fleet_hosts("w1", "b1", "b2", "b3", "db")
    groups = {
        "django_celery_workers": ["w1"],
        "django_celery_beat": ["w1"],
        "django_celery_broker": ["b1", "b2", "b3"],
        "django_celery_database": ["db"],
    }
    facts = {
        name: {"hostname": name, "distribution_major_version": release}
        for name, release in (("b1", "12"), ("b2", "13"), ("b3", "12"))
    }
    result = run_role(tmp_path, {"django_celery_broker": "rabbitmq"}, hosts, groups, facts)
    assert_failed_in_validation(
        result,
        r'mixes Debian\s+releases \(release: hosts, \{"12": \["b1", "b3"\], "13": \["b2"\]\}\)',
    )
