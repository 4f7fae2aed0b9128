"""Monitoring on the fleet (issue 14): Prometheus on the broker host scrapes every exporter, its
figures match what Redis holds, and each alert is caused, reaches the tests' receiver
(../../resources/alert_receiver.py, on the broker host) and resolves once its cause is removed.

One round of faults (the fixture alert_round) causes them all at once, so the scenario spends
that time once: the slow pools stopped on both worker hosts with tasks queued for them (pool
down, queue deep, queue backlog), beat stopped (beat down, beat stale), and one long task on
the default pool held unacknowledged past 0.25 of the visibility timeout. Then every cause is
removed and the round waits for each alert to resolve. The scenario's values (molecule.yml):
scrape every 5 s, alerts "for" 10 s, heartbeat every 5 s, stale after 3 of them, queue deep
above 5, backlog after 30 s, unacknowledged for 30 s.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from fleet import (
    BEAT_HOST,
    BROKER,
    EPHEMERAL,
    INVENTORY,
    NAME,
    WEB,
    WORKER_HOSTS,
    broker_address,
    node,
    shell,
    wait_until,
)

testinfra_hosts = [f"ansible://{WEB}"]

PROMETHEUS_PORT = 9090
RECEIVED = "/var/lib/private/alert-receiver/alerts.jsonl"
CONSOLE = f"/monitoring/consoles/django_celery-{NAME}.html"
FLOWER = "/flower"
SITE_CONF = f"/etc/nginx/conf.d/django_celery-{NAME}.conf"
QUEUED = 8
HELD_SECONDS = 45
# How long a fault may take to reach the receiver, and its end to be reported resolved:
# scrape (5 s) + "for" (10 s) + evaluation (5 s) + group_wait (5 s) on top of the fault's own
# threshold (30 s for backlog and unacknowledged), with room for a loaded CI machine; resolved
# notices go out at Alertmanager's group_interval (30 s).
FIRE_BOUND = 90
RESOLVE_BOUND = 90
# Each alert the round causes, and the labels its notification must carry.
ALERTS = {
    "CeleryPoolDown": {"pool": "slow"},
    "CeleryQueueDeep": {"queue": "slow"},
    "CeleryQueueBacklog": {"queue": "slow"},
    "CeleryBeatDown": {},
    "CeleryBeatStale": {},
    "CeleryTasksUnackedTooLong": {},
    "CeleryTaskFailureRatio": {"task": "demo.tasks.add"},
}
# Failing tasks (demo.tasks.add(1, "a") raises TypeError), one a second for this long, while the
# other faults last: CeleryTaskFailureRatio sees their share of add's runs.
FAILING_SECONDS = 40

# Run on the broker host: GET a path of Prometheus's API, print the JSON.
PROMETHEUS_GET = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())
"""

# Run in the Django shell of the web host: the length of a queue in Redis as kombu keeps it,
# priority sub-queues included (the name, then "\\x06\\x16" and the priority step).
QUEUE_LENGTH = """
from proj.celery import app
with app.connection_for_read() as connection:
    with connection.default_channel.conn_or_acquire() as client:
        steps = ("", "\\x06\\x163", "\\x06\\x166", "\\x06\\x169")
        print(sum(client.llen(QUEUE + step) for step in steps))
"""

# Run on the web host: GET a page through the front door (SNI for the site's name), with basic
# auth if given; print the status and the body as JSON.
FRONT_DOOR_GET = """
import base64, http.client, json, socket, ssl, sys
site, path, auth, method = sys.argv[1:5]
context = ssl._create_unverified_context()
sock = context.wrap_socket(socket.create_connection(("127.0.0.1", 443), timeout=20),
                           server_hostname=site)
connection = http.client.HTTPSConnection(site, 443, context=context)
connection.sock = sock
headers = {"Host": site}
if auth:
    headers["Authorization"] = "Basic " + auth
connection.request(method, path, headers=headers)
response = connection.getresponse()
print(json.dumps({"status": response.status, "body": response.read().decode("utf-8", "replace")}))
"""


def prometheus(path: str) -> dict:
    url = f"http://{broker_address()}:{PROMETHEUS_PORT}/monitoring/api/v1/{path}"
    out = node(BROKER).check_output(f"python3 -c {shlex.quote(PROMETHEUS_GET)} {shlex.quote(url)}")
    return json.loads(out)["data"]


def query(expr: str) -> list[dict]:
    return prometheus(f"query?query={quote(expr)}")["result"]


def value(expr: str) -> float | None:
    result = query(expr)
    return float(result[0]["value"][1]) if result else None


def queue_length(queue: str) -> int:
    return int(shell(node(WEB), f"QUEUE = {queue!r}\n" + QUEUE_LENGTH))


def received() -> list[dict]:
    """Every alert the receiver got, one entry per alert per notification, oldest first."""
    text = node(BROKER).run(f"cat {RECEIVED}").stdout
    entries = []
    for line in text.splitlines():
        record = json.loads(line)
        for alert in record["notification"]["alerts"]:
            entries.append({"received": record["received"], **alert})
    return entries


def matching(entries: list[dict], name: str, status: str, since: float) -> list[dict]:
    labels = ALERTS[name]
    return [
        e
        for e in entries
        if e["received"] >= since
        and e["status"] == status
        and e["labels"].get("alertname") == name
        and all(e["labels"].get(k) == v for k, v in labels.items())
    ]


def fired_instances(entries, name: str, since: float) -> set[str]:
    return {e["labels"].get("instance", "") for e in matching(entries, name, "firing", since)}


def expected_instances(name: str) -> int:
    """The pool runs on both worker hosts; everything else is one series."""
    return len(WORKER_HOSTS) if name == "CeleryPoolDown" else 1


def first(entries, name: str, status: str, since: float) -> float | None:
    found = matching(entries, name, status, since)
    if name == "CeleryPoolDown" and status == "firing":
        # Fired once both hosts' pools are reported.
        seen: set[str] = set()
        for e in found:
            seen.add(e["labels"].get("instance", ""))
            if len(seen) == expected_instances(name):
                return e["received"]
        return None
    return found[0]["received"] if found else None


def send(queue: str, seconds: float, prefix: str, count: int) -> None:
    code = (
        "from proj.celery import app\n"
        f"for i in range({count}):\n"
        f"    app.send_task('demo.tasks.slow', args=['{prefix}-%02d' % i, {seconds}], "
        f"queue='{queue}')\n"
        "print('sent')"
    )
    shell(node(WEB), code)


def send_failing(seconds: int) -> None:
    """In the background on the web host: one failing task a second for this many seconds."""
    code = (
        "import time\n"
        "from proj.celery import app\n"
        f"for _ in range({seconds}):\n"
        "    app.send_task('demo.tasks.add', args=[1, 'a'], queue='celery')\n"
        "    time.sleep(1)\n"
    )
    node(WEB).check_output(f"nohup {NAME}-manage shell -c {shlex.quote(code)} >/dev/null 2>&1 &")


@pytest.fixture(scope="module")
def alert_round():
    """Cause every alert at once, measure, remove the causes; return what was seen."""
    workers = [node(name) for name in WORKER_HOSTS]
    beat = node(BEAT_HOST)
    prefix = f"monitoring-{time.strftime('%H%M%S')}"
    succeeded = 'sum(flower_events_total{task="demo.tasks.slow",type="task-succeeded"})'
    failed = 'sum(flower_events_total{task="demo.tasks.add",type="task-failed"})'
    seen: dict = {"flower_before": (value(succeeded) or 0, value(failed) or 0)}
    began = time.time()
    for worker in workers:
        worker.check_output(f"systemctl stop {NAME}-worker@slow.service")
    beat.check_output(f"systemctl stop {NAME}-beat.service")
    send("slow", 1, f"{prefix}-queued", QUEUED)
    send("celery", HELD_SECONDS, f"{prefix}-held", 1)
    send_failing(FAILING_SECONDS)
    seen["began"] = began
    # Two faults end by themselves: the held task after its run, the failing tasks after their
    # last send; the others when the tests remove them (fixed, below).
    ends_by_itself = {
        "CeleryTasksUnackedTooLong": began + HELD_SECONDS,
        "CeleryTaskFailureRatio": time.time() + FAILING_SECONDS,
    }
    # The figures while nothing consumes the slow queue: two scrapes after the send.
    time.sleep(12)
    seen["queue_length"] = queue_length("slow")
    seen["queue_status"] = json.loads(node(WEB).check_output(f"{NAME}-manage queue_status"))
    seen["queue_metric"] = value(f'django_celery_queue_depth{{project="{NAME}",queue="slow"}}')
    unacked_age = f'django_celery_unacked_oldest_age_seconds{{project="{NAME}"}}'
    seen["unacked_age_first"] = value(unacked_age)
    time.sleep(10)
    seen["unacked_age_later"] = value(unacked_age)

    def all_fired():
        entries = received()
        return all(first(entries, name, "firing", began) for name in ALERTS)

    wait_until(all_fired, FIRE_BOUND - (time.time() - began), 3)
    entries = received()
    seen["fired"] = {name: first(entries, name, "firing", began) for name in ALERTS}
    seen["fired_instances"] = {name: fired_instances(entries, name, began) for name in ALERTS}
    # The pages an operator opens, while the faults last (Flower's first: it drops a stopped
    # worker from its page 2 minutes after its last heartbeat).
    seen["flower"] = flower_page()
    seen["console"] = console_page()
    # The fleet's own nodes: a host removed without a warm shutdown (test_add_host's) stays
    # "online" in Flower until it is purged (docs/MONITORING.md, limits).
    fleet_nodes = "|".join(f"(default|slow)@{host}" for host in WORKER_HOSTS.values())
    seen["workers_online_metric"] = value(f'sum(flower_worker_online{{worker=~"{fleet_nodes}"}})')
    seen["console_queue_metric"] = value(
        f'django_celery_queue_depth{{project="{NAME}",queue="slow"}}'
    )

    fixed = time.time()
    for worker in workers:
        worker.check_output(f"systemctl start {NAME}-worker@slow.service")
    beat.check_output(f"systemctl start {NAME}-beat.service")
    seen["fixed"] = fixed

    seen["fault_ended"] = {name: ends_by_itself.get(name, fixed) for name in ALERTS}

    def resolutions():
        # The first resolved notice after the alert fired (a fault that ends by itself may
        # resolve before the others are removed).
        entries = received()
        return {
            name: first(entries, name, "resolved", seen["fired"][name] or fixed) for name in ALERTS
        }

    wait_until(lambda: all(resolutions().values()), RESOLVE_BOUND + HELD_SECONDS, 3)
    seen["resolved"] = resolutions()
    seen["flower_after"] = (value(succeeded) or 0, value(failed) or 0)
    rows = [
        "| alert | fired after (s) | resolved after its fault ended (s) |",
        "| --- | ---: | ---: |",
    ]
    for name in ALERTS:
        fire, resolve, ended = (
            seen["fired"][name],
            seen["resolved"][name],
            seen["fault_ended"][name],
        )
        fire_after = round(fire - began) if fire else "not fired"
        resolve_after = round(resolve - ended) if resolve else "not resolved"
        rows.append(f"| {name} | {fire_after} | {resolve_after} |")
    print("\n".join(rows))
    return seen


def secrets() -> dict[str, str]:
    folder = Path(INVENTORY).parent / ".secrets" / NAME
    return {path.name: path.read_text().strip() for path in folder.iterdir() if path.is_file()}


def site_name() -> str:
    conf = node(WEB).file(SITE_CONF).content_string
    return re.search(r"^\s*server_name\s+([^;\s]+)", conf, re.M).group(1)


def front_door(path: str, auth: str = "", method: str = "GET") -> dict:
    argv = [site_name(), path, base64.b64encode(auth.encode()).decode() if auth else "", method]
    out = node(WEB).check_output(f"python3 -c {shlex.quote(FRONT_DOOR_GET)} {shlex.join(argv)}")
    return json.loads(out)


def chromium(url: str, site: str, *options: str) -> subprocess.CompletedProcess:
    """Headless Chromium from Debian on the controller, reaching the site at the web host's
    address (as an operator's browser would, with the lab's self-signed certificate)."""
    address = node(WEB).check_output("hostname -I").split()[0]
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            f"--host-resolver-rules=MAP {site} {address}",
            "--window-size=1280,1700",
            *options,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # What a failing assertion prints must not carry the password of the URL.
    password = secrets()["monitoring_password"]
    done.stdout = done.stdout.replace(password, "***")
    done.stderr = done.stderr.replace(password, "***")
    return done


def page_in_chromium(path: str, screenshot_name: str, *options: str) -> dict:
    """A page of the site as Chromium renders it, with basic auth, and a screenshot of it in the
    scenario's ephemeral directory."""
    site = site_name()
    url = f"https://monitor:{secrets()['monitoring_password']}@{site}{path}"
    screenshot = EPHEMERAL / screenshot_name
    shot = chromium(url, site, f"--screenshot={screenshot}", *options)
    dom = chromium(url, site, "--dump-dom", *options)
    return {
        "dom": dom.stdout,
        "errors": (shot.stderr + dom.stderr)[-2000:],
        "screenshot": str(screenshot),
        "screenshot_bytes": screenshot.stat().st_size if screenshot.exists() else 0,
    }


def console_page() -> dict:
    return page_in_chromium(CONSOLE, "monitoring-console.png")


def flower_page() -> dict:
    """Flower's workers page, which its script fills in (a virtual-time budget lets it run)."""
    return page_in_chromium(f"{FLOWER}/workers", "flower-workers.png", "--virtual-time-budget=5000")


def test_every_exporter_is_scraped_and_up():
    def targets():
        active = prometheus("targets?state=active")["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = wait_until(targets, 60) or prometheus("targets?state=active")["activeTargets"]
    health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
    jobs = sorted({job for job, _ in health})
    nodes = [instance for job, instance in health if job == "node"]
    assert (jobs, len(nodes), set(health.values())) == (
        ["alertmanager", "flower", "node", "postgres", "prometheus", "redis"],
        2 + len(WORKER_HOSTS),
        {"up"},
    ), health


def test_queue_depth_metric_equals_the_queue_length_in_redis(alert_round):
    assert alert_round["queue_metric"] == alert_round["queue_length"] == QUEUED, alert_round


def test_the_queue_status_command_reports_the_depth_and_unacked_tasks_the_metrics_have(
    alert_round,
):
    """For hosts without monitoring: NAME-manage queue_status (the figures /health/ reports)."""
    status = alert_round["queue_status"]
    assert status["depth"]["slow"] == alert_round["queue_metric"] == QUEUED, status
    assert status["unacked"]["count"] >= 1 and status["unacked"]["oldest_age_seconds"] > 0


def test_unacked_age_metric_rises_while_a_task_is_held(alert_round):
    first_age, later_age = alert_round["unacked_age_first"], alert_round["unacked_age_later"]
    assert first_age is not None and first_age > 0, alert_round
    assert later_age >= first_age + 8, (first_age, later_age)


@pytest.mark.parametrize("name", ALERTS)
def test_the_alert_reaches_the_receiver_when_its_fault_is_caused(alert_round, name):
    fired = alert_round["fired"][name]
    assert fired is not None, f"{name} not received within {FIRE_BOUND} s"
    assert fired - alert_round["began"] <= FIRE_BOUND
    assert len(alert_round["fired_instances"][name]) == expected_instances(name)


@pytest.mark.parametrize("name", ALERTS)
def test_the_alert_resolves_when_its_fault_is_removed(alert_round, name):
    resolved, ended = alert_round["resolved"][name], alert_round["fault_ended"][name]
    assert resolved is not None, f"{name} not resolved within {RESOLVE_BOUND + HELD_SECONDS} s"
    # Not before its fault ended (a few seconds' slack: the self-ending faults' ends are
    # estimates), and within the bound after.
    assert ended - 5 <= resolved <= ended + RESOLVE_BOUND, (name, resolved - ended)


def test_the_console_page_in_chromium_shows_the_queue_depth_prometheus_has(alert_round):
    page = alert_round["console"]
    shown = re.search(r'id="queue-slow"[^>]*>\s*([0-9.]+)', page["dom"])
    assert shown, (page["dom"][:3000], page["errors"])
    assert float(shown.group(1)) == alert_round["console_queue_metric"] == QUEUED


def test_the_console_page_in_chromium_lists_the_firing_pool_alert(alert_round):
    page = alert_round["console"]
    assert "CeleryPoolDown" in page["dom"] and 'id="no-alerts"' not in page["dom"], page["errors"]


def test_a_screenshot_of_the_console_page_is_saved(alert_round):
    page = alert_round["console"]
    print(f"screenshot: {page['screenshot']} ({page['screenshot_bytes']} bytes)")
    assert page["screenshot_bytes"] > 10_000, page["errors"]


def test_the_console_page_needs_the_monitoring_password():
    wrong = front_door(CONSOLE, "monitor:not-the-password")["status"]
    assert (front_door(CONSOLE)["status"], wrong) == (401, 401)


def test_no_exporter_exposes_a_secret():
    """Every target's /metrics, fetched as Prometheus does, holds none of the fleet's secrets."""
    broker = node(BROKER)
    bodies = {}
    for target in prometheus("targets?state=active")["activeTargets"]:
        url = target["scrapeUrl"]
        bodies[url] = broker.check_output(
            f"python3 -c {shlex.quote(PROMETHEUS_GET)} {shlex.quote(url)}"
        )
    leaked = [
        (name, url)
        for name, secret in secrets().items()
        if len(secret) >= 8
        for url, body in bodies.items()
        if secret in body
    ]
    assert len(bodies) >= 5 and leaked == [], leaked


def test_the_redis_exporters_user_can_read_no_key():
    """The exporter's ACL user reads lengths and delivery tags, never a value: GET of a task
    result is refused (the beat heartbeat lives in node exporter's textfile, not in Redis)."""
    result = node(BROKER).run(
        "set -a; . /etc/default/prometheus-redis-exporter; "
        'redis-cli --no-auth-warning --user "$REDIS_USER" --pass "$REDIS_PASSWORD" '
        '-p "${REDIS_ADDR##*:}" GET celery-task-meta-any'
    )
    assert "NOPERM" in result.stdout + result.stderr, result.stdout + result.stderr


def test_flower_in_chromium_lists_every_worker_pool_flower_reports_online(alert_round):
    """Each worker node (POOL@HOST) of the fleet shows on Flower's page; as many as its metric
    counts online (the slow pools were stopped: Flower reports them offline)."""
    page = alert_round["flower"]
    nodes = [f"{pool}@{host}" for host in WORKER_HOSTS.values() for pool in ("default", "slow")]
    shown = [name for name in nodes if name in page["dom"]]
    assert shown == nodes, (page["dom"][:3000], page["errors"])
    online = re.search(r"Online workers\D{0,300}?(\d+)", page["dom"], re.S)
    assert online, page["dom"][:3000]
    assert int(online.group(1)) == alert_round["workers_online_metric"] == len(WORKER_HOSTS)
    assert page["screenshot_bytes"] > 10_000, page["errors"]


def test_flower_through_the_front_door_is_read_only():
    """Its API's worker shutdown, sent through the front door with the password, is refused."""
    auth = f"monitor:{secrets()['monitoring_password']}"
    path = f"{FLOWER}/api/worker/shutdown/default@{next(iter(WORKER_HOSTS.values()))}"
    refused = front_door(path, auth, method="POST")["status"]
    allowed = front_door(f"{FLOWER}/metrics", auth)["status"]
    assert (refused, allowed) == (403, 200)


def test_flower_needs_the_monitoring_password():
    assert front_door(f"{FLOWER}/workers")["status"] == 401


def test_flower_counts_the_tasks_that_ran_by_name_and_state(alert_round):
    """The round's 8 slow tasks succeeded and its failing adds failed, counted by Flower."""
    (succeeded_before, failed_before) = alert_round["flower_before"]
    (succeeded_after, failed_after) = alert_round["flower_after"]
    succeeded, failed = succeeded_after - succeeded_before, failed_after - failed_before
    assert succeeded >= QUEUED and failed >= FAILING_SECONDS // 2, (succeeded, failed)


def test_flower_itself_refuses_its_api_without_authentication():
    """Straight to Flower's port from a fleet host (past nginx): the worker shutdown is refused,
    and the pool still runs."""
    beat_host = node(BEAT_HOST)
    address = beat_host.check_output("hostname -I").split()[0]
    worker = f"default@{WORKER_HOSTS[BEAT_HOST]}"
    code = (
        "import urllib.error, urllib.request\n"
        f"url = 'http://{address}:5555{FLOWER}/api/worker/shutdown/{worker}'\n"
        "try:\n"
        "    print(urllib.request.urlopen(urllib.request.Request(url, data=b'', method='POST'),"
        " timeout=20).status)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code)\n"
    )
    status = node(WEB).check_output(f"python3 -c {shlex.quote(code)}").strip()
    time.sleep(2)
    state = beat_host.check_output(f"systemctl is-active {NAME}-worker@default.service").strip()
    assert (status, state) == ("401", "active")
