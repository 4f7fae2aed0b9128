"""Monitoring on a RabbitMQ host (issue 14): Prometheus scrapes RabbitMQ's own Prometheus plugin
(per-queue figures of the app's virtual host), node exporter and Flower on this one host; the
queue figures equal what rabbitmqctl reports; the beat heartbeat reaches Prometheus through node
exporter's textfile collector; each alert a RabbitMQ fleet can raise is caused, reaches the
tests' receiver (../../resources/alert_receiver.py) and resolves once its cause is removed.

One round of faults (the fixture alert_round): the slow pool and beat stopped, tasks queued for
the slow pool (pool down, queue deep, beat down, beat stale) and one long task held by the
default pool (unacknowledged). The scenario's values (molecule.yml): scrape every 5 s, alerts
"for" 10 s, heartbeat every 5 s, stale after 3 of them, queue deep above 5.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from urllib.parse import quote

import pytest
from conftest import (
    MANAGE,
    NAME,
    broker_credentials,
    controller_secret,
    send_slow_tasks,
    wait_for,
)

PROMETHEUS = "http://127.0.0.1:9090/monitoring"
PLUGIN_PORT = 15692
RECEIVED = "/var/lib/private/alert-receiver/alerts.jsonl"
QUEUED = 8
HELD_SECONDS = 40
STALE_AFTER = 3 * 5
# How long a fault may take to reach the receiver, and its end to be reported resolved: scrape
# (5 s) + "for" (10 s) + evaluation (5 s) + group_wait (5 s) on top of the fault's own threshold
# (15 s for a stale heartbeat), with room for a loaded CI machine; resolved notices go out at
# Alertmanager's group_interval (30 s).
FIRE_BOUND = 90
RESOLVE_BOUND = 90
ALERTS = {
    "CeleryPoolDown": {"pool": "slow"},
    "CeleryQueueDeep": {"queue": "slow"},
    "CeleryBeatDown": {},
    "CeleryBeatStale": {},
}

# Run on the host: GET a URL, print the body.
HTTP_GET = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())
"""


def http_get(host, url: str) -> str:
    return host.check_output(f"python3 -c {shlex.quote(HTTP_GET)} {shlex.quote(url)}")


def query(host, expr: str) -> list[dict]:
    body = http_get(host, f"{PROMETHEUS}/api/v1/query?query={quote(expr)}")
    return json.loads(body)["data"]["result"]


def value(host, expr: str) -> float | None:
    result = query(host, expr)
    return float(result[0]["value"][1]) if result else None


def rabbitmq_queue(host, queue: str) -> dict:
    """rabbitmqctl's own figures of a queue of the app's virtual host."""
    out = host.check_output(
        f"rabbitmqctl -q list_queues -p {NAME} --formatter json "
        "name messages_ready messages_unacknowledged"
    )
    return next(q for q in json.loads(out) if q["name"] == queue)


def received(host) -> list[dict]:
    """Every alert the receiver got, one entry per alert per notification, oldest first."""
    entries = []
    for line in host.run(f"cat {RECEIVED}").stdout.splitlines():
        record = json.loads(line)
        for alert in record["notification"]["alerts"]:
            entries.append({"received": record["received"], **alert})
    return entries


def first(entries: list[dict], name: str, status: str, since: float) -> float | None:
    for entry in entries:
        labels = entry["labels"]
        if (
            entry["received"] >= since
            and entry["status"] == status
            and labels.get("alertname") == name
            and all(labels.get(key) == want for key, want in ALERTS[name].items())
        ):
            return entry["received"]
    return None


@pytest.fixture(scope="module")
def alert_round(host):
    """Cause the alerts at once, measure, remove the causes; return what was seen."""
    prefix = f"monitoring-{time.strftime('%H%M%S')}"
    heartbeat = f'django_celery_beat_heartbeat_age_seconds{{project="{NAME}"}}'
    seen: dict = {"heartbeat_before": value(host, heartbeat)}
    began = time.time()
    host.check_output(f"systemctl stop {NAME}-worker@slow.service {NAME}-beat.service")
    send_slow_tasks(host, f"{prefix}-queued", QUEUED, 1, queue="slow")
    send_slow_tasks(host, f"{prefix}-held", 1, HELD_SECONDS, queue="celery")
    seen["began"] = began
    # The figures while nothing consumes the slow queue: two scrapes after the send.
    time.sleep(12)
    seen["rabbitmq_slow"] = rabbitmq_queue(host, "slow")
    seen["rabbitmq_celery"] = rabbitmq_queue(host, "celery")
    seen["queue_metric"] = value(
        host, f'django_celery_queue_depth{{project="{NAME}",queue="slow"}}'
    )
    seen["unacked_metric"] = value(host, f'django_celery_unacked_tasks{{project="{NAME}"}}')
    seen["queue_status"] = json.loads(host.check_output(f"{MANAGE} queue_status"))
    seen["console"] = http_get(host, f"{PROMETHEUS}/consoles/django_celery-{NAME}.html")

    def all_fired():
        entries = received(host)
        return all(first(entries, name, "firing", began) for name in ALERTS)

    wait_for(all_fired, FIRE_BOUND - (time.time() - began), 3)
    entries = received(host)
    seen["fired"] = {name: first(entries, name, "firing", began) for name in ALERTS}
    seen["heartbeat_stopped"] = value(host, heartbeat)

    fixed = time.time()
    host.check_output(f"systemctl start {NAME}-worker@slow.service {NAME}-beat.service")
    seen["fixed"] = fixed

    def resolutions():
        entries = received(host)
        return {name: first(entries, name, "resolved", fixed) for name in ALERTS}

    wait_for(lambda: all(resolutions().values()), RESOLVE_BOUND, 3)
    seen["resolved"] = resolutions()
    seen["heartbeat_after"] = value(host, heartbeat)
    rows = [
        "| alert | fired after (s) | resolved after its fault ended (s) |",
        "| --- | ---: | ---: |",
    ]
    for name in ALERTS:
        fire, resolve = seen["fired"][name], seen["resolved"][name]
        rows.append(
            f"| {name} | {round(fire - began) if fire else 'not fired'} | "
            f"{round(resolve - fixed) if resolve else 'not resolved'} |"
        )
    print("\n".join(rows))
    # The held task and the queued ones run to the end before the next module's tests.
    wait_for(lambda: rabbitmq_queue(host, "slow")["messages_ready"] == 0, 60, 2)
    return seen


def test_every_target_is_scraped_and_up(host):
    expected = {
        ("node", "1"),
        ("rabbitmq", "1"),
        ("prometheus", "1"),
        ("alertmanager", "1"),
        ("flower", "1"),
    }

    def targets():
        return {(row["metric"]["job"], row["value"][1]) for row in query(host, "up")}

    # A scrape may fail once on a loaded machine: up within a minute, all together.
    assert (
        wait_for(lambda: (found := targets()) == expected and found, 60, 5) or targets()
    ) == expected


def test_rabbitmqs_prometheus_plugin_listens_on_loopback_only(host):
    listening = host.check_output(f"ss -Hltn 'sport = :{PLUGIN_PORT}'")
    addresses = {line.split()[3] for line in listening.splitlines()}
    assert addresses == {f"127.0.0.1:{PLUGIN_PORT}"}


def test_rabbitmqs_plugin_gives_the_queue_figures_of_the_apps_virtual_host(host):
    body = http_get(
        host,
        f"http://127.0.0.1:{PLUGIN_PORT}/metrics/detailed?family=queue_coarse_metrics&vhost={NAME}",
    )
    queues = set(
        re.findall(
            r'^rabbitmq_detailed_queue_messages_ready\{vhost="([^"]+)",queue="([^"]+)"', body, re.M
        )
    )
    assert {(NAME, "celery"), (NAME, "slow")} <= queues
    assert {vhost for vhost, _ in queues} == {NAME}


def test_the_beat_heartbeat_reaches_prometheus_through_the_textfile_collector(host):
    age = wait_for(
        lambda: (
            (v := value(host, f'django_celery_beat_heartbeat_age_seconds{{project="{NAME}"}}'))
            is not None
            and 0 <= v < STALE_AFTER
            and v
        ),
        30,
        3,
    )
    assert age is not False and 0 <= age < STALE_AFTER


def test_the_workers_write_the_heartbeat_file_and_no_other_user_can(host):
    path = f"/var/lib/prometheus/node-exporter/django_celery-{NAME}-heartbeat.prom"
    stamp = float(host.file(path).content_string.split()[-1])
    assert stamp > time.time() - 3 * STALE_AFTER, "no worker wrote a heartbeat lately"
    assert host.run(f"runuser -u nobody -- sh -c ': >> {path}'").rc != 0
    assert (host.file(path).user, oct(host.file(path).mode)) == (NAME, "0o644")


def test_queue_depth_metric_equals_what_rabbitmq_reports(alert_round):
    assert alert_round["rabbitmq_slow"]["messages_ready"] == QUEUED
    assert alert_round["queue_metric"] == QUEUED


def test_the_queue_status_command_reports_the_depth_prometheus_has(alert_round):
    """For hosts without monitoring: NAME-manage queue_status (the figures /health/ reports)."""
    status = alert_round["queue_status"]
    assert status["depth"]["slow"] == alert_round["queue_metric"] == QUEUED, status


def test_unacked_metric_counts_the_task_the_default_pool_holds(alert_round):
    assert alert_round["rabbitmq_celery"]["messages_unacknowledged"] >= 1
    assert alert_round["unacked_metric"] >= 1


def test_the_console_page_shows_rabbitmqs_queue_depth(alert_round):
    cell = re.search(r'id="queue-slow">([^<]*)<', alert_round["console"])
    assert cell and float(cell.group(1)) == QUEUED


def test_the_heartbeat_ages_while_beat_is_stopped_and_is_fresh_again_after(alert_round):
    assert 0 <= alert_round["heartbeat_before"] < STALE_AFTER
    assert alert_round["heartbeat_stopped"] > STALE_AFTER
    assert 0 <= alert_round["heartbeat_after"] < STALE_AFTER


@pytest.mark.parametrize("name", list(ALERTS))
def test_the_alert_reaches_the_receiver_when_its_fault_is_caused(alert_round, name):
    fired = alert_round["fired"][name]
    assert fired, f"{name} did not reach the receiver within {FIRE_BOUND} s"
    assert fired - alert_round["began"] <= FIRE_BOUND


@pytest.mark.parametrize("name", list(ALERTS))
def test_the_alert_resolves_when_its_fault_is_removed(alert_round, name):
    resolved = alert_round["resolved"][name]
    assert resolved, f"{name} was not reported resolved within {RESOLVE_BOUND} s"
    assert resolved - alert_round["fixed"] <= RESOLVE_BOUND


def test_no_scraped_page_holds_a_secret(host):
    """Every target's page, fetched as Prometheus does, holds none of the project's secrets."""
    targets = json.loads(http_get(host, f"{PROMETHEUS}/api/v1/targets?state=active"))
    bodies = {
        t["scrapeUrl"]: http_get(host, t["scrapeUrl"]) for t in targets["data"]["activeTargets"]
    }
    secrets = {
        "secret_key": controller_secret("secret_key"),
        "monitoring_password": controller_secret("monitoring_password"),
        "broker_password": broker_credentials(host)[1],
    }
    leaked = [
        (name, url)
        for name, secret in secrets.items()
        for url, body in bodies.items()
        if secret in body or quote(secret, safe="") in body
    ]
    assert len(bodies) >= 5 and leaked == [], leaked
