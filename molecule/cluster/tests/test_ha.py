"""The ha project (vars/ha.yml): a RabbitMQ cluster of three nodes (broker, web, worker1) with
quorum queues, and beat on worker1 and worker2 under the beat lock. The cluster as the role
formed it, then the fault rows of issue 15, each counted: confirmed tasks lost, tasks started
or run twice, and the recovery times the README and docs/RELIABILITY.md quote.

Short form by default (fewer tasks, shorter outages); DJANGO_CELERY_FULL=1 (scripts/test
--full) runs the long forms. Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import shlex
import time

import pytest
from conftest import configured
from fleet import (
    HA_BROKERS,
    INVENTORY,
    SCENARIO,
    changed_tasks,
    docker,
    from_outside_the_fleet,
    node,
    playbook,
    recap,
    run_id,
    wait_until,
)

testinfra_hosts = ["ansible://dc-cluster-web"]

NAME = "ha"
MANAGE = f"{NAME}-manage"
BROKERS = HA_BROKERS
NODES = sorted(f"rabbit@{short}" for short in BROKERS.values())
BEAT_HOSTS = ["dc-cluster-worker1", "dc-cluster-worker2"]
WORKERS = ["dc-cluster-worker1", "dc-cluster-worker2"]
# Runs the producer: a broker host that is never paused (it connects to its own node first).
# A client whose node freezes blocks until that node answers again, confirm timeout or not
# (measured; docs/RABBITMQ.md, limits), so the frozen host is never the producer's own node.
PRODUCER = "dc-cluster-worker1"
# What Celery logs when its delayed-delivery setup fails on a node, retries, or gives up.
DELAYED_DELIVERY_TROUBLE = (
    "Failed to declare exchanges and queues for",
    "Retrying delayed delivery setup",
    "Failed to setup delayed delivery",
)
# Row 2's frozen broker host: it holds no database and runs no worker of the project.
PAUSED_BROKER_HOST = "dc-cluster-web"
FULL = os.environ.get("DJANGO_CELERY_FULL") == "1"
# Tasks that flow through a fault, and countdown tasks waiting in RabbitMQ meanwhile.
FLOW = 500 if FULL else 200
COUNTDOWNS = 50 if FULL else 10
COUNTDOWN_RANGE = (30, 120) if FULL else (20, 40)
# Longer than the bounds below, so that a recovery that only came with the host's return fails.
PAUSE = 120 if FULL else 75
BEAT_PAUSE = 120 if FULL else 60
# The HA project's worker processes (2 pools x 2 processes x 2 hosts), one task reserved each
# (prefetch multiplier 1): at most this many tasks can be started twice by one fault.
IN_FLIGHT = 8
HEARTBEAT = 5
LOCK_TIMEOUT = 10
# Stated bounds (docs/RELIABILITY.md quotes the measured figures).
# A node killed outright: its connections close at once, its queues elect a new leader at once.
PUBLISH_GAP_BOUND = 15
COUNTDOWN_LATE_BOUND = 30
# A node that stops answering is declared down after net_ticktime (30 s, up to 1.25 times
# that), then its queues elect new leaders and its clients' confirms time out (5 s) and move on.
RECOVERY_BOUND = 60
# A countdown task whose dead-letter hop waited on the frozen node: after that node answers.
RESUME_BOUND = 30
MEMBERS_BACK_BOUND = 120
TAKEOVER_BOUND = LOCK_TIMEOUT + 20
# RabbitMQ closes a silent client's connection after two missed heartbeats (10 s each).
REDELIVERY_BOUND = 50


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


def rabbitmqctl(host: str, *args: str) -> str:
    command = shlex.join(["runuser", "-u", "rabbitmq", "--", "/usr/sbin/rabbitmqctl", "-q", *args])
    return node(host).check_output(command)


def cluster_status(host: str) -> dict:
    return json.loads(rabbitmqctl(host, "cluster_status", "--formatter", "json"))


def queues(host: str = "dc-cluster-broker") -> list[dict]:
    out = rabbitmqctl(
        host,
        "list_queues",
        "-p",
        NAME,
        "name",
        "type",
        "leader",
        "members",
        "online",
        "--formatter",
        "json",
    )
    return json.loads(out)


def report(prefix: str, until: str = "", timeout: float = 0) -> dict:
    wait = f" --until-{until} --timeout={timeout:g}" if until else ""
    out = node(PRODUCER).check_output(f"{MANAGE} slow_task_report --prefix={prefix}{wait}")
    return json.loads(out)


def clock(host: str) -> float:
    return float(node(host).check_output("date +%s.%N"))


def quorum_critical(host: str) -> bool:
    command = shlex.join(
        [
            "runuser",
            "-u",
            "rabbitmq",
            "--",
            "/usr/sbin/rabbitmq-queues",
            "-q",
            "check_if_node_is_quorum_critical",
        ]
    )
    return node(host).run(command).rc != 0


def partitioned_nodes() -> dict[str, list[str]]:
    """{node: nodes it records as partitioned from it}, from every broker host's own view."""
    found = {}
    for host in BROKERS:
        for reporter, others in (cluster_status(host).get("partitions") or {}).items():
            found.setdefault(reporter, sorted(set(others)))
    return {reporter: others for reporter, others in found.items() if others}


def changed_hosts(output: str, task: str) -> list[str]:
    """The hosts a playbook's output reports changed in the role's task named `task`."""
    return sorted({host for name, host in changed_tasks(output) if name == task})


def restarted_in_the_first_pass(output: str) -> list[str]:
    """The hosts restart_broker.yml's first pass (nodes recorded as partitioned) restarted."""
    first = output.split("PLAY [Restart the RabbitMQ nodes the cluster records as partitioned", 1)
    first = first[-1].split("PLAY [Restart the broker, one host at a time", 1)[0]
    return changed_hosts(first, "Restart the broker")


def lead_from(target: str, queue: str) -> None:
    """Make node `target` the leader of the project's quorum queue `queue` (Ra's leadership
    transfer: RabbitMQ 3.10 has no command for it), so that the row freezes the node the flow
    goes through whatever the rows before left."""
    leader = next(item["leader"] for item in queues() if item["name"] == queue)
    if leader != target:
        server = f"'{NAME}_{queue}'"
        rabbitmqctl(
            "dc-cluster-broker",
            "eval",
            f"ra:transfer_leadership({{{server}, '{leader}'}}, {{{server}, '{target}'}}).",
        )
    assert wait_until(
        lambda: next(item["leader"] for item in queues() if item["name"] == queue) == target, 30
    ), f"{target} never took the lead of {queue}"


def all_members_online() -> bool:
    try:
        listed = queues()
    except AssertionError:
        return False
    return bool(listed) and all(
        sorted(queue.get("online") or []) == NODES for queue in listed if queue["type"] == "quorum"
    )


# Run in the ha Django shell on the producer host, in the background: first COUNTDOWNS slow
# tasks with countdowns spread over the range, then FLOW slow tasks of 0.2 s, one every 0.1 s,
# each sent with publisher confirms (the deploy settings) and a 5 s confirm timeout; a
# publish that fails is retried by Celery's retry policy (about 45 s) before it counts as
# failed. Writes what was confirmed, when, to /var/lib/ha/produce-RUN.json.
PRODUCE = """
import json, time, pathlib
from proj.celery import app
countdowns, confirmed, failed = [], [], []
low, high = {low}, {high}
for index in range({countdowns}):
    delay = low + (high - low) * index / max(1, {countdowns} - 1)
    task_id = '{prefix}-cd-%03d' % index
    app.send_task('demo.tasks.slow', args=[task_id, 0.2], queue='slow', countdown=delay,
                  confirm_timeout=5)
    countdowns.append([task_id, time.time() + delay])
pathlib.Path('/var/lib/ha/produce-{run}.started').write_text('')
for index in range({flow}):
    task_id = '{prefix}-%05d' % index
    try:
        app.send_task('demo.tasks.slow', args=[task_id, 0.2], queue='slow', confirm_timeout=5)
        confirmed.append([task_id, time.time()])
    except Exception as error:
        failed.append([task_id, repr(error)[:300], time.time()])
    time.sleep(0.1)
result = {{'countdowns': countdowns, 'confirmed': confirmed, 'failed': failed}}
pathlib.Path('/var/lib/ha/produce-{run}.json').write_text(json.dumps(result))
"""


def start_producer(label: str) -> dict:
    run = f"{label}-{run_id()}"
    prefix = f"ha-{run}"
    code = PRODUCE.format(
        run=run,
        prefix=prefix,
        flow=FLOW,
        countdowns=COUNTDOWNS,
        low=COUNTDOWN_RANGE[0],
        high=COUNTDOWN_RANGE[1],
    )
    host = node(PRODUCER)
    host.check_output(
        f"systemd-run --unit=ha-producer-{run} --collect {MANAGE} shell -c {shlex.quote(code)}"
    )
    started = wait_until(lambda: host.file(f"/var/lib/ha/produce-{run}.started").exists, 120)
    assert started, host.run(f"journalctl -u ha-producer-{run} --no-pager | tail -30").stdout
    return {"run": run, "prefix": prefix}


def finish_producer(produced: dict, wait: float = COUNTDOWN_RANGE[1] + 120) -> dict:
    """Wait for the producer's result, then (up to `wait` s) for every confirmed task to
    complete; the counts. "lost" are the confirmed tasks that did not complete, "held" the
    countdown tasks among them."""
    host = node(PRODUCER)
    path = f"/var/lib/ha/produce-{produced['run']}.json"
    done = wait_until(lambda: host.file(path).exists, FLOW * 0.1 + 300, interval=2)
    assert done, host.run(
        f"journalctl -u ha-producer-{produced['run']} --no-pager | tail -30"
    ).stdout
    sent = json.loads(host.file(path).content_string)
    confirmed = [task_id for task_id, _ in sent["confirmed"]] + [
        task_id for task_id, _ in sent["countdowns"]
    ]
    final = report(produced["prefix"], until=f"completed={len(confirmed)}", timeout=wait)
    delayed = {task_id for task_id, _ in sent["countdowns"]}
    times = [at for _, at in sent["confirmed"]]
    return {
        "confirmed": len(confirmed),
        "failed": len(sent["failed"]),
        "failures": sent["failed"][:3],
        "lost": sorted(set(confirmed) - set(final["ids"]) - delayed),
        "held": sorted(delayed - set(final["ids"])),
        "started_twice": final["started_twice"],
        "ran_twice": final["duplicated"],
        "publish_gap": longest_gap(times),
        "countdowns": sent["countdowns"],
        "prefix": produced["prefix"],
    }


def slow_task_rows(host: str, expression: str):
    """Evaluate `expression` (S is the sample app's SlowTaskCompletion model) in the ha Django
    shell on a host; its value, through JSON."""
    code = (
        "import json; from demo.models import SlowTaskCompletion as S; "
        f"print(json.dumps({expression}))"
    )
    out = node(host).check_output(f"{MANAGE} shell -c {shlex.quote(code)}")
    return json.loads(out.strip().splitlines()[-1])


def longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def countdown_starts(counts: dict) -> list[list[float]]:
    """[due, started] of each countdown task that ran (epoch times), in the order they were
    sent (earliest due first)."""
    started = slow_task_rows(
        PRODUCER,
        "{r.task_id: r.started_at.timestamp() for r in "
        f"S.objects.filter(task_id__startswith='{counts['prefix']}-cd-')}}",
    )
    return [[due, started[task_id]] for task_id, due in counts["countdowns"] if task_id in started]


def lateness(starts: list[list[float]]) -> list[float]:
    """How late each countdown task started, in seconds after its due time."""
    return [round(started - due, 1) for due, started in starts]


def completion_gap(prefix: str) -> float:
    """The longest time no task of this prefix completed, between the first and the last."""
    return longest_gap(
        slow_task_rows(
            PRODUCER,
            "sorted(r.completed_at.timestamp() for r in "
            f"S.objects.filter(task_id__startswith='{prefix}-0', runs__gt=0))",
        )
    )


def assert_every_confirmed_task_ran(counts: dict) -> None:
    """Every task the producer sent was confirmed, and every confirmed one ran (countdown tasks
    still held in RabbitMQ are counted apart, as "held")."""
    assert counts["confirmed"] == FLOW + COUNTDOWNS, counts["failures"]
    assert counts["lost"] == []


def say(row: str, figures: dict) -> None:
    shown = {
        k: (round(v, 1) if isinstance(v, float) else v)
        for k, v in figures.items()
        if k not in ("countdowns", "countdown_starts", "resumed_at", "prefix", "lost")
        or (k == "lost" and v)
    }
    print(f"{row}: {json.dumps(shown)}")


# --- The cluster as the role formed it ----------------------------------------------------------


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_every_broker_host_runs_a_node_of_one_cluster_of_three(broker):
    status = cluster_status(broker)
    assert sorted(status["running_nodes"]) == NODES
    assert sorted(status["disk_nodes"]) == NODES


def test_every_node_has_the_same_erlang_cookie_only_rabbitmq_can_read():
    digests = set()
    for host in BROKERS:
        cookie = node(host).file("/var/lib/rabbitmq/.erlang.cookie")
        assert (cookie.user, cookie.group, cookie.mode) == ("rabbitmq", "rabbitmq", 0o400)
        digests.add(
            node(host).check_output("sha256sum /var/lib/rabbitmq/.erlang.cookie").split()[0]
        )
    assert len(digests) == 1


def test_every_node_pauses_a_minority_rather_than_split():
    for broker in BROKERS:
        out = rabbitmqctl(
            broker, "eval", "application:get_env(rabbit, cluster_partition_handling)."
        )
        assert out.strip() == "{ok,pause_minority}", broker


def test_every_nodes_dead_letter_workers_send_an_unconfirmed_message_again_after_10_s():
    """Not RabbitMQ's 180 s: countdown tasks held that long behind a frozen node (row 2)."""
    expected = configured("django_celery_rabbitmq_dead_letter_confirm_timeout_ms")
    for broker in BROKERS:
        out = rabbitmqctl(
            broker,
            "eval",
            "application:get_env(rabbit, dead_letter_worker_publisher_confirm_timeout).",
        )
        assert out.strip() == f"{{ok,{expected}}}", broker


def test_every_queue_of_the_project_is_a_quorum_queue_with_a_member_on_every_node():
    listed = {queue["name"]: queue for queue in queues()}
    for name in ("celery", "slow", "dead_letter"):
        assert listed[name]["type"] == "quorum", listed[name]
        assert sorted(listed[name]["members"]) == NODES, listed[name]


def test_the_workers_broker_url_names_every_node_with_their_own_first_on_a_broker_host():
    addresses = {
        short: node(host).check_output("hostname -I").split()[0] for host, short in BROKERS.items()
    }
    for host in WORKERS:
        url = node(host).check_output(f"grep ^CELERY_BROKER_URL= /etc/{NAME}/{NAME}.env")
        found = re.findall(r"@([0-9.]+):5672/ha", url)
        assert sorted(found) == sorted(addresses.values()), host
        if host in BROKERS:
            assert found[0] == addresses[BROKERS[host]]


def test_erlang_distribution_ports_are_closed_to_hosts_outside_the_fleet():
    """4369 and 25672 of a node: open from a fleet host, closed from a container on the same
    network that is in no inventory group."""
    target = node("dc-cluster-web").check_output("hostname -I").split()[0]
    probe = (
        "import socket\n"
        f"for port in (4369, 25672):\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        f"    print(port, 'open' if s.connect_ex(('{target}', port)) == 0 else 'closed')\n"
    )
    inside = node("dc-cluster-worker2").check_output(f"python3 -c {shlex.quote(probe)}")
    outside = from_outside_the_fleet(probe)
    assert (inside.split(), outside.split()) == (
        ["4369", "open", "25672", "open"],
        ["4369", "closed", "25672", "closed"],
    )


def test_a_task_goes_through_the_cluster_and_comes_back():
    out = node(PRODUCER).check_output(f"{MANAGE} run_task demo.tasks.add 20 22 --timeout 60")
    assert json.loads(out.strip().splitlines()[-1]) == 42


def beat_children(host: str) -> int:
    """How many beats run on the host: children of its beat unit's main process (the lock)."""
    main = node(host).check_output(f"systemctl show --value --property=MainPID {NAME}-beat.service")
    if main.strip() in ("", "0"):
        return 0
    return len(node(host).run(f"pgrep -P {main.strip()}").stdout.split())


def test_beat_runs_on_exactly_one_of_the_two_beat_hosts():
    assert wait_until(lambda: sorted(beat_children(host) for host in BEAT_HOSTS) == [0, 1], 60)
    for host in BEAT_HOSTS:
        assert node(host).service(f"{NAME}-beat.service").is_running


# --- Fault rows ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leader_killed():
    """Row 1: kill -9 of the node leading the slow queue while FLOW tasks flow and COUNTDOWNS
    countdown tasks wait; row 3 reads how the node came back."""
    produced = start_producer("kill")
    leader = next(queue["leader"] for queue in queues() if queue["name"] == "slow")
    host = next(name for name, short in BROKERS.items() if f"rabbit@{short}" == leader)
    time.sleep(5)
    killed_at = clock(host)
    node(host).check_output("systemctl kill --signal=SIGKILL rabbitmq-server.service")
    # The node comes back by itself (Restart= in the role's drop-in).
    running = wait_until(
        lambda: (
            node(host)
            .run("runuser -u rabbitmq -- /usr/sbin/rabbitmq-diagnostics -q check_running")
            .rc
            == 0
        ),
        MEMBERS_BACK_BOUND,
        2,
    )
    running_after = clock(host) - killed_at
    members = wait_until(all_members_online, MEMBERS_BACK_BOUND, 2)
    members_after = clock(host) - killed_at
    not_critical = wait_until(
        lambda: not any(quorum_critical(name) for name in BROKERS), MEMBERS_BACK_BOUND, 2
    )
    counts = finish_producer(produced)
    counts.update(
        killed=leader,
        node_running_after=running_after,
        members_online_after=members_after,
        running=bool(running),
        members_back=bool(members),
        not_critical=bool(not_critical),
    )
    counts["countdown_lates"] = lateness(countdown_starts(counts))
    say("row 1+3, kill -9 of the slow queue's leader", counts)
    return counts


def test_killing_the_leader_node_loses_no_confirmed_task(leader_killed):
    assert_every_confirmed_task_ran(leader_killed)


def test_killing_the_leader_node_runs_no_more_tasks_twice_than_were_in_flight(leader_killed):
    assert leader_killed["started_twice"] <= IN_FLIGHT
    assert leader_killed["ran_twice"] <= IN_FLIGHT


def test_publishing_goes_on_within_the_bound_after_the_leader_is_killed(leader_killed):
    assert leader_killed["publish_gap"] <= PUBLISH_GAP_BOUND


def test_every_countdown_task_fires_within_the_bound_of_its_due_time_across_the_kill(
    leader_killed,
):
    assert leader_killed["held"] == []
    assert max(leader_killed["countdown_lates"], default=0.0) <= COUNTDOWN_LATE_BOUND


def test_the_killed_node_runs_again_with_every_queue_member_online_and_no_node_quorum_critical(
    leader_killed,
):
    assert (
        leader_killed["running"],
        leader_killed["members_back"],
        leader_killed["not_critical"],
    ) == (True, True, True)


@pytest.fixture(scope="module")
def broker_host_paused(leader_killed):
    """Row 2: a broker host that stops answering (docker pause: its processes freeze, its
    network stack still acknowledges TCP) for PAUSE seconds while tasks flow: web, a node that
    holds no database and runs no worker of the project."""
    for queue in ("celery", "slow"):
        lead_from(f"rabbit@{BROKERS[PAUSED_BROKER_HOST]}", queue)
    produced = start_producer("pause")
    host = PAUSED_BROKER_HOST
    led = sorted(queue["name"] for queue in queues() if queue["leader"] == "rabbit@web")
    time.sleep(5)
    paused_at = time.time()
    docker("pause", host)
    try:
        time.sleep(PAUSE)
    finally:
        docker("unpause", host)
    resumed_at = time.time()
    members = wait_until(all_members_online, MEMBERS_BACK_BOUND, 2)
    counts = finish_producer(produced, wait=COUNTDOWN_RANGE[1] + RECOVERY_BOUND)
    counts.update(
        led_by_the_paused_node=[name for name in led if not name.startswith("celery_delayed")]
        + [f"{sum(name.startswith('celery_delayed') for name in led)} delayed queues"],
        completion_gap=completion_gap(produced["prefix"]),
        members_back=bool(members),
        countdown_starts=countdown_starts(counts),
        resumed_at=resumed_at,
    )
    counts["countdown_lates"] = lateness(counts["countdown_starts"])
    counts["countdowns_after_the_return"] = sum(
        started > resumed_at for _, started in counts["countdown_starts"]
    )
    journal = worker_journal_since(paused_at)
    counts.update(
        reconnects=sum("Connected to amqp://" in line for line in journal),
        delayed_delivery_trouble=[
            line for line in journal if any(text in line for text in DELAYED_DELIVERY_TROUBLE)
        ],
    )
    say(f"row 2, broker host paused {PAUSE} s", counts)
    return counts


def test_the_silent_broker_host_led_the_queues_the_tasks_flow_through(broker_host_paused):
    assert {"celery", "slow"} <= set(broker_host_paused["led_by_the_paused_node"])


def test_a_silent_broker_host_loses_no_confirmed_task(broker_host_paused):
    assert_every_confirmed_task_ran(broker_host_paused)


def test_a_silent_broker_host_runs_no_more_tasks_twice_than_were_in_flight(broker_host_paused):
    assert broker_host_paused["ran_twice"] <= IN_FLIGHT


def test_tasks_flow_again_within_the_bound_while_a_broker_host_is_silent(broker_host_paused):
    assert broker_host_paused["publish_gap"] <= RECOVERY_BOUND
    assert broker_host_paused["completion_gap"] <= RECOVERY_BOUND


def test_every_countdown_task_ran_within_30_s_of_the_frozen_nodes_return_or_60_s_of_its_due_time(
    broker_host_paused,
):
    """Each countdown task ran (none still held in a delayed queue), and started at most
    RESUME_BOUND after the frozen node answered again, or RECOVERY_BOUND after its due time if
    that is later (the long form's late ones). Countdown tasks do not fail over a frozen node:
    RabbitMQ's dead-letter worker keeps sending a task to the old leader of its next queue, and
    learns of the new one only from that node once it answers (docs/RABBITMQ.md). Tasks after
    the return: 9 of 10 in the CI rehearsal at fe6485b (2026-12-07, at most 5 s after it), 2 of
    10 in three development runs (at most 16 s after it); before the 10 s resend, 2 of 10 were
    still held 100 s after it."""
    assert broker_host_paused["held"] == []
    resumed = broker_host_paused["resumed_at"]
    too_late = [
        {"late": round(started - due, 1), "after_the_return": round(started - resumed, 1)}
        for due, started in broker_host_paused["countdown_starts"]
        if started - due > RECOVERY_BOUND and started - resumed > RESUME_BOUND
    ]
    assert too_late == []


def test_the_silent_broker_hosts_members_are_back_once_it_answers(broker_host_paused):
    assert broker_host_paused["members_back"]


def worker_journal_since(since: float) -> list[str]:
    """The ha worker pools' journal lines on both worker hosts since `since` (epoch time)."""
    lines = []
    for host in WORKERS:
        out = (
            node(host)
            .run(f"journalctl -u '{NAME}-worker@*' --since=@{int(since)} --no-pager -o cat")
            .stdout
        )
        lines += [f"{host}: {line}" for line in out.splitlines()]
    return lines


def test_a_worker_that_reconnects_while_a_node_is_frozen_declares_nothing_on_the_other_nodes(
    broker_host_paused,
):
    """Celery 5.7.0 declares its delayed-delivery exchanges and queues on every node of the
    broker URL each time a consumer reconnects, three tries each: a frozen node held worker1's
    consumer for 35 s (2026-12-07). The deploy settings keep it to the node the consumer has
    just connected to (the nodes of one cluster share their definitions): no worker logged a
    failed, retried or abandoned delayed-delivery setup since the freeze began. The row prints
    how many consumer connections the workers made meanwhile ("reconnects")."""
    assert broker_host_paused["delayed_delivery_trouble"] == []


@pytest.fixture(scope="module")
def rolling_restart(broker_host_paused):
    """playbooks/restart_broker.yml, node by node gated on quorum, while tasks flow."""
    produced = start_producer("rolling")
    partitioned_before = partitioned_nodes()
    result = playbook("playbooks/restart_broker.yml", "-e", f"@{SCENARIO / 'vars' / 'ha.yml'}")
    counts = finish_producer(produced)
    counts.update(
        rc=result.returncode,
        output=result.stdout[-3000:],
        partitioned_before=partitioned_before,
        restarted_first=restarted_in_the_first_pass(result.stdout),
        partitioned_after=partitioned_nodes(),
        recap=recap(result.stdout),
    )
    say("rolling broker restart", {k: v for k, v in counts.items() if k not in ("output", "recap")})
    return counts


def test_the_rolling_broker_restart_playbook_restarts_every_node_and_passes(rolling_restart):
    assert rolling_restart["rc"] == 0, rolling_restart["output"]
    assert all(rolling_restart["recap"][host]["failed"] == 0 for host in BROKERS)
    assert all(rolling_restart["recap"][host]["changed"] >= 1 for host in BROKERS)


def test_the_rolling_restart_restarts_a_node_left_partitioned_first_and_heals_the_cluster(
    rolling_restart,
):
    """Row 2's frozen node may come back partitioned (pause_minority never paused it): the
    playbook's first pass restarts exactly the nodes a majority recorded as partitioned, and no
    partition is left after the run."""
    expected = [PAUSED_BROKER_HOST] if rolling_restart["partitioned_before"] else []
    assert rolling_restart["restarted_first"] == expected, rolling_restart["partitioned_before"]
    assert rolling_restart["partitioned_after"] == {}


def test_the_rolling_broker_restart_loses_no_confirmed_task(rolling_restart):
    assert_every_confirmed_task_ran(rolling_restart)
    assert rolling_restart["held"] == []


def beat_sends(host: str, since: float) -> list[float]:
    """When the host's beat sent the heartbeat entry (its journal), since the epoch time."""
    out = (
        node(host)
        .run(f"journalctl -u {NAME}-beat.service --since=@{int(since)} -o short-unix --no-pager")
        .stdout
    )
    return [
        float(line.split()[0]) for line in out.splitlines() if "Sending due task heartbeat" in line
    ]


@pytest.fixture(scope="module")
def beat_host_paused(rolling_restart):
    """Rows 4 and 5: worker2, running beat and tasks, stops answering for BEAT_PAUSE seconds.
    Beat is first moved to worker2 (its beat unit on worker1 stopped until worker2 holds the
    lock), and six 20 s tasks start on the two worker hosts."""
    worker1, _worker2 = node("dc-cluster-worker1"), node("dc-cluster-worker2")
    worker1.check_output(f"systemctl stop {NAME}-beat.service")
    assert wait_until(lambda: beat_children("dc-cluster-worker2") == 1, 60), (
        "worker2 never took the lock"
    )
    worker1.check_output(f"systemctl start {NAME}-beat.service")
    assert wait_until(
        lambda: (
            "standby" in worker1.run(f"journalctl -u {NAME}-beat.service -n 5 --no-pager").stdout
        ),
        60,
    ), "worker1 is no standby"
    prefix = f"ha-lost-{run_id()}"
    code = (
        "from proj.celery import app; "
        f"[app.send_task('demo.tasks.slow', args=['{prefix}-%d' % i, 20], queue='slow') "
        "for i in range(6)]"
    )
    worker1.check_output(f"{MANAGE} shell -c {shlex.quote(code)}")
    started = json.loads(
        worker1.check_output(
            f"{MANAGE} slow_task_report --prefix={prefix} --until-started=4 --timeout=60"
        )
    )
    assert started["reached"], started
    window_start = clock("dc-cluster-worker1") - 60
    paused_at = clock("dc-cluster-worker1")
    docker("pause", "dc-cluster-worker2")
    try:
        taken = wait_until(lambda: beat_sends("dc-cluster-worker1", paused_at), TAKEOVER_BOUND + 10)
        remaining = BEAT_PAUSE - (clock("dc-cluster-worker1") - paused_at)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        docker("unpause", "dc-cluster-worker2")
    resumed_at = clock("dc-cluster-worker1")
    one_beat = wait_until(lambda: sorted(beat_children(host) for host in BEAT_HOSTS) == [0, 1], 60)
    final = json.loads(
        worker1.check_output(
            f"{MANAGE} slow_task_report --prefix={prefix} --until-completed=6 --timeout=120"
        )
    )
    time.sleep(3 * HEARTBEAT)
    sends = sorted(
        beat_sends("dc-cluster-worker1", window_start)
        + beat_sends("dc-cluster-worker2", window_start)
    )
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    restarted = slow_task_rows(
        "dc-cluster-worker1",
        "[r.started_at.timestamp() for r in "
        f"S.objects.filter(task_id__startswith='{prefix}-', starts__gt=1)]",
    )
    counts = {
        "takeover": (taken[0] - paused_at) if taken else None,
        "doubled": sum(1 for gap in gaps if gap < HEARTBEAT / 2),
        "missed": sum(max(0, round(gap / HEARTBEAT) - 1) for gap in gaps),
        "sends": len(sends),
        "one_beat_after_resume": bool(one_beat),
        "resumed_after": resumed_at - paused_at,
        "completed": final["completed"],
        "started_twice": final["started_twice"],
        "ran_twice": final["duplicated"],
        "redelivered_after": max((at - paused_at for at in restarted), default=None),
    }
    say(f"rows 4+5, beat and worker host paused {BEAT_PAUSE} s", counts)
    return counts


def test_the_standby_fires_the_next_beat_within_the_bound_when_the_beat_host_stops_answering(
    beat_host_paused,
):
    assert beat_host_paused["takeover"] is not None
    assert beat_host_paused["takeover"] <= TAKEOVER_BOUND


def test_no_beat_run_is_sent_twice_across_the_takeover_and_the_frozen_hosts_return(
    beat_host_paused,
):
    assert beat_host_paused["doubled"] == 0


def test_beat_runs_missed_during_the_takeover_stay_within_the_lock_timeout(beat_host_paused):
    assert beat_host_paused["missed"] <= (TAKEOVER_BOUND // HEARTBEAT) + 1


def test_exactly_one_beat_runs_once_the_frozen_host_answers_again(beat_host_paused):
    assert beat_host_paused["one_beat_after_resume"]


def test_the_tasks_a_lost_worker_host_was_running_are_redelivered_to_the_others(beat_host_paused):
    assert beat_host_paused["completed"] == 6
    assert beat_host_paused["started_twice"] >= 1
    assert beat_host_paused["redelivered_after"] is not None
    # Redelivered while the host was still silent, within the bound.
    assert (
        beat_host_paused["redelivered_after"]
        <= REDELIVERY_BOUND
        < beat_host_paused["resumed_after"]
    )


@pytest.fixture(scope="module")
def replaced_broker_host(beat_host_paused):
    """A broker host replaced: web's RabbitMQ node wiped as a new disk would have it (the node
    stopped, its package purged, /var/lib/rabbitmq and /etc/rabbitmq removed), then the ha
    project's playbook run again, as an operator would after rebuilding the host."""
    web = node(PAUSED_BROKER_HOST)
    web.check_output(
        "systemctl stop rabbitmq-server && DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "
        "rabbitmq-server && rm -rf /var/lib/rabbitmq /etc/rabbitmq"
    )
    listed_before = cluster_status("dc-cluster-broker")["disk_nodes"]
    result = playbook("molecule/cluster/ha.yml")
    members = wait_until(all_members_online, MEMBERS_BACK_BOUND, 2)
    status = {host: cluster_status(host) for host in BROKERS}
    counts = {
        "rc": result.returncode,
        "output": result.stdout[-3000:],
        "listed_before": listed_before,
        "forgotten": changed_hosts(result.stdout, "Make the cluster forget this host's old node"),
        "grown": changed_hosts(
            result.stdout, "Give the replaced host's node its quorum queue members back"
        ),
        "running": {host: sorted(item["running_nodes"]) for host, item in status.items()},
        "partitions": {host: item.get("partitions") or {} for host, item in status.items()},
        "members_back": bool(members),
    }
    say("replaced broker host", {k: v for k, v in counts.items() if k != "output"})
    return counts


def test_a_replaced_broker_host_rejoins_the_cluster_by_itself(replaced_broker_host):
    """The run succeeds, the cluster first forgot the old node (the running cluster still listed
    it), and every node then runs in one cluster of three with no partition."""
    assert replaced_broker_host["rc"] == 0, replaced_broker_host["output"]
    assert f"rabbit@{BROKERS[PAUSED_BROKER_HOST]}" in replaced_broker_host["listed_before"]
    assert replaced_broker_host["forgotten"] == [PAUSED_BROKER_HOST]
    assert replaced_broker_host["running"] == dict.fromkeys(BROKERS, NODES)
    assert replaced_broker_host["partitions"] == dict.fromkeys(BROKERS, {})


def test_a_replaced_broker_hosts_node_gets_its_quorum_queue_members_back(replaced_broker_host):
    assert replaced_broker_host["grown"] == [PAUSED_BROKER_HOST]
    assert replaced_broker_host["members_back"]


def test_a_task_goes_through_the_cluster_after_a_broker_host_was_replaced(replaced_broker_host):
    out = node(PRODUCER).check_output(f"{MANAGE} run_task demo.tasks.add 2 3 --timeout 60")
    assert json.loads(out.strip().splitlines()[-1]) == 5
