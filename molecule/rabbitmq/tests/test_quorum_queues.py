"""Quorum queues (django_celery_rabbitmq_queue_type: quorum, the sample app in this scenario; shop
and envsite stay classic on the same RabbitMQ): the role declares them before the workers start,
with a delivery limit and a dead-letter queue by policy; the workers use them without global
QoS; countdown tasks wait in RabbitMQ's delayed-delivery queues, not in a worker.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
from conftest import MANAGE, NAME, POOLS, SCENARIO, ansible_playbook, unit_of, wait_for
from rabbitmq_helpers import VENV_PYTHON, host_state

DELIVERY_LIMIT = SCENARIO.get("django_celery_rabbitmq_delivery_limit", 20)
COUNTDOWN = 15

# Run on the host with the app's kombu and the services' broker URL: publish one message to the
# slow queue (no pool consumes it while the test runs), take it and hand it back (reject with
# requeue) until RabbitMQ stops handing it out, then read the dead_letter queue.
REJECT_LOOP = r"""
import json, os, sys, time, kombu
marker = sys.argv[1]


def carries(message):
    # Raw bodies (str or bytes): a refused message of another test, a pickled task, is
    # dead-lettered too and cannot be decoded here.
    body = message.body
    return marker in (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)


with kombu.Connection(os.environ["CELERY_BROKER_URL"], connect_timeout=10) as conn:
    channel = conn.channel()
    kombu.Producer(channel).publish({"marker": marker}, exchange="slow", routing_key="slow",
                                    serializer="json", delivery_mode=2)
    slow = kombu.Queue("slow", channel=channel, no_declare=True)
    deliveries, empty, deadline = 0, 0, time.monotonic() + 60
    while empty < 5 and time.monotonic() < deadline:
        message = slow.get(no_ack=False)
        if message is None:
            empty += 1
            time.sleep(0.2)
        elif carries(message):
            deliveries += 1
            message.reject(requeue=True)
        else:
            message.requeue()
    dead_letter, found = kombu.Queue("dead_letter", channel=channel, no_declare=True), None
    others = []
    while found is None and time.monotonic() < deadline + 10:
        dead = dead_letter.get(no_ack=False)
        if dead is None:
            break
        if carries(dead):
            found = marker
            dead.ack()
        else:
            others.append(dead)  # another dead letter: left where it is
    for other in others:
        other.requeue()
    print(json.dumps({"deliveries": deliveries, "dead_letter": found}))
"""

# Run in the app's Django shell: send add(2, 3) with a countdown, wait for its result, print the
# seconds between sending and the result.
COUNTDOWN_TASK = f"""
import json, time
from demo.tasks import add
sent = time.time()
result = add.apply_async((2, 3), countdown={COUNTDOWN})
print(json.dumps({{"result": result.get(timeout=60), "seconds": time.time() - sent}}))
"""


def queues(host, vhost: str) -> dict:
    out = host.check_output(
        f"rabbitmqctl -q list_queues -p {vhost} --formatter json name type policy messages"
    )
    return {q["name"]: q for q in json.loads(out)}


def test_the_apps_queues_are_quorum_queues(host):
    found = queues(host, NAME)
    assert {name: found[name]["type"] for name in ("celery", "slow", "dead_letter")} == {
        "celery": "quorum",
        "slow": "quorum",
        "dead_letter": "quorum",
    }


def test_a_classic_project_beside_it_keeps_classic_queues(host):
    assert queues(host, "shop")["shop"]["type"] == "classic"


def test_the_apps_queues_carry_the_delivery_limit_and_dead_letter_policy(host):
    found = queues(host, NAME)
    assert [found[name]["policy"] for name in ("celery", "slow")] == ["django_celery-quorum"] * 2
    assert found["dead_letter"]["policy"] == ""
    out = host.check_output(f"rabbitmqctl -q list_policies -p {NAME} --formatter json")
    (policy,) = [p for p in json.loads(out) if p["name"] == "django_celery-quorum"]
    definition = policy["definition"]
    if isinstance(definition, str):
        definition = json.loads(definition)
    assert definition == {"delivery-limit": DELIVERY_LIMIT, "dead-letter-exchange": "dead_letter"}


def test_a_message_handed_back_past_the_delivery_limit_goes_to_the_dead_letter_queue(host):
    """Without the policy RabbitMQ 4.0 would drop it after 20 deliveries (3.10: never stop)."""
    marker = f"poison-{time.time():.0f}"
    host.check_output(f"systemctl stop {NAME}-worker@slow.service")
    try:
        out = host.check_output(
            f"set -a; . /etc/{NAME}/{NAME}.env; set +a; "
            f"{VENV_PYTHON} -c {shlex.quote(REJECT_LOOP)} {marker}"
        )
    finally:
        host.check_output(f"systemctl start {NAME}-worker@slow.service")
    report = json.loads(out.strip().splitlines()[-1])
    print(report)
    assert report["dead_letter"] == marker, report
    # Handed back DELIVERY_LIMIT times, dead-lettered at the next return (3.10.8 and 4.0.5).
    assert report["deliveries"] == DELIVERY_LIMIT + 1, report


def test_each_pool_runs_without_global_qos(host):
    for pool in POOLS:
        journal = host.check_output(f"journalctl --no-pager -b -u {unit_of(pool)} -o cat")
        assert "Global QoS is disabled" in journal, pool["name"]


def test_a_countdown_task_waits_in_rabbitmq_and_runs_when_due(host):
    """Native delayed delivery: while it waits, the task is in a celery_delayed_N queue of the
    vhost (not prefetched by a worker); it runs after its countdown, not before."""
    output = f"/var/tmp/{NAME}-countdown.json"
    host.check_output(f"rm -f {output}")
    host.check_output(
        f"nohup {MANAGE} shell -c {shlex.quote(COUNTDOWN_TASK)} > {output} 2>/dev/null &"
    )

    def delayed() -> int:
        return sum(
            q["messages"]
            for name, q in queues(host, NAME).items()
            if name.startswith("celery_delayed_")
        )

    # Django's start-up comes first: on a loaded machine several seconds of the countdown.
    waiting = wait_for(delayed, COUNTDOWN, 0.5)
    assert waiting == 1, "the countdown task was not in a delayed-delivery queue while it waited"

    def report_line() -> str:
        # Django's shell prints its auto-imports first; the report is the JSON line.
        lines = host.run(f"cat {output}").stdout.splitlines()
        return next((line for line in lines if line.startswith("{")), "")

    done = wait_for(report_line, 60 + COUNTDOWN, 1)
    assert done, "the countdown task's sender reported nothing"
    report = json.loads(done)
    assert report["result"] == 5
    assert COUNTDOWN <= report["seconds"] <= COUNTDOWN + 10, report


@pytest.fixture(scope="module")
def type_change_run(host):
    """The sample app's run with its queues switched to classic while they exist as quorum."""
    before = host_state(host)
    result = ansible_playbook("-e", json.dumps({"django_celery_rabbitmq_queue_type": "classic"}))
    return {"result": result, "before": before, "after": host_state(host)}


def test_switching_existing_quorum_queues_to_classic_is_refused_naming_them(type_change_run):
    result = type_change_run["result"]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "RabbitMQ cannot change the type of a queue" in output, output[-3000:]
    assert "celery (quorum)" in output and "slow (quorum)" in output


def test_the_refused_switch_leaves_the_host_as_it_was(type_change_run):
    assert type_change_run["after"] == type_change_run["before"]
