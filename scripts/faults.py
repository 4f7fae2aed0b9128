"""Fault suite: inject one fault at a time into a converged single host and count the tasks.

For each row: submit N slow tasks with unique ids (some run, the rest wait in the queue),
inject the fault, then count the completed ids over time. Each row reports submitted,
completed, lost, started twice (a re-execution began), ran twice (completed twice) and the
seconds from the fault until the last task completed, and fails if any task is lost.

    python scripts/faults.py --container django-celery-lab [--full] [--write docs/RELIABILITY.md]

The short form (default) uses fewer tasks and shorter outages; --full runs the long forms.
Traffic stays inside the test host (docker exec); every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

NAME = "djangoapp"
MANAGE = f"/usr/local/bin/{NAME}-manage"
POOL = "slow"
UNIT = f"{NAME}-worker@{POOL}.service"
BEAT = f"{NAME}-beat.service"
WEB = f"{NAME}-web.service"


class Host:
    """A test host reached with docker exec."""

    def __init__(self, container: str):
        self.container = container

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", self.container, "bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, command: str, timeout: float = 120) -> str:
        result = self.run(command, timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{command!r} exited {result.returncode}: {result.stderr[-2000:]}")
        return result.stdout

    def manage_json(self, *args: str, timeout: float = 120):
        out = self.ok(shlex.join([MANAGE, *args]), timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])

    def main_pid(self, unit: str) -> int:
        return int(self.ok(f"systemctl show --value --property=MainPID {unit}").strip())

    def wait_booted(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("systemctl is-system-running", timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(1)
        raise RuntimeError(f"{self.container} did not finish booting in {timeout} s")


@dataclass
class Row:
    fault: str
    broker: str
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    started_twice: int = 0
    ran_twice: int = 0
    recovery_seconds: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def broker_of(host: Host) -> str:
    url = host.ok(f"grep -h '^CELERY_BROKER_URL=' /etc/{NAME}/{NAME}.env")
    return "rabbitmq" if "amqp" in url.split("=", 1)[1][:8] else "redis"


def broker_unit(broker: str) -> str:
    return {"redis": "redis-server.service", "rabbitmq": "rabbitmq-server.service"}[broker]


def submit(host: Host, prefix: str, count: int, duration: float) -> list[str]:
    code = (
        "from proj.celery import app\n"
        f"for i in range({count}):\n"
        f"    app.send_task('demo.tasks.slow', args=['{prefix}-%03d' % i, {duration}], "
        f"queue='{POOL}')\n"
    )
    host.ok(f"{MANAGE} shell -c {shlex.quote(code)}")
    return [f"{prefix}-{i:03d}" for i in range(count)]


def report(host: Host, prefix: str, *, until: str = "", timeout: float = 0) -> dict:
    """The slow-task report of the ids with this prefix; with until ("started=N" or
    "completed=N"), first waits up to timeout seconds, polling inside one command on the host
    rather than starting one command per poll."""
    wait = [f"--until-{until}", f"--timeout={timeout:.0f}"] if until else []
    return host.manage_json("slow_task_report", f"--prefix={prefix}-", *wait, timeout=timeout + 120)


def wait_started(host: Host, prefix: str, timeout: float = 60) -> None:
    if not report(host, prefix, until="started=1", timeout=timeout)["reached"]:
        raise RuntimeError(f"no task of {prefix} started within {timeout} s")


def drain(host: Host, prefix: str, ids: list[str], since: float, timeout: float, duration: float):
    """Wait until every id completed (or the timeout); then wait one more task duration so a
    second execution still under way is seen too. Returns (report, seconds to last completion)."""
    deadline = time.monotonic() + timeout
    done_at = None
    # One waiting command, repeated only if it fails (a rebooted host's database still starting).
    while time.monotonic() < deadline:
        left = max(deadline - time.monotonic(), 1)
        try:
            reached = report(host, prefix, until=f"completed={len(ids)}", timeout=left)["reached"]
        except (RuntimeError, ValueError, IndexError):
            time.sleep(2)
            continue
        if reached:
            done_at = time.monotonic()
        break
    time.sleep(duration + 2)
    final = report(host, prefix)
    return final, (round(done_at - since, 1) if done_at else None)


def row_from(fault: str, broker: str, ids: list[str], final: dict, seconds) -> Row:
    return Row(
        fault=fault,
        broker=broker,
        submitted=len(ids),
        completed=final["completed"],
        lost=len(set(ids) - set(final["ids"])),
        started_twice=final["started_twice"],
        ran_twice=final["duplicated"],
        recovery_seconds=seconds,
    )


def pool_child_pids(host: Host) -> list[int]:
    main = host.main_pid(UNIT)
    return [int(p) for p in host.ok(f"ps --no-headers -o pid --ppid {main}").split()]


def busy_child(host: Host) -> int:
    """The pid of the pool process running a task (the first child is enough with -c 1)."""
    return pool_child_pids(host)[0]


class Suite:
    def __init__(self, host: Host, full: bool, release_cmd: list[str] | None):
        self.host = host
        self.full = full
        self.broker = broker_of(host)
        self.release_cmd = release_cmd
        self.count = 12 if full else 5
        self.duration = 3.0 if full else 2.0
        self.visibility = float(
            host.ok(f"sed -n 's/^CELERY_VISIBILITY_TIMEOUT=//p' /etc/{NAME}/{NAME}.env").strip()
            or 3600
        )
        # Redis: how long a dead worker's tasks wait in `unacked` before they come back: one
        # round of the role's unacked-task timer after they are min_age old, or, with the
        # timer off, the visibility timeout.
        self.reclaim = self.visibility if self.broker == "redis" else 0.0
        timer = f"{NAME}-unacked.timer"
        if (
            self.broker == "redis"
            and host.run(f"systemctl is-active {timer}").stdout.strip() == "active"
        ):
            interval = host.ok(f"sed -n 's/^OnUnitActiveSec=//p' /etc/systemd/system/{timer}")
            config = json.loads(host.ok(f"cat /etc/{NAME}/unacked.json"))
            self.reclaim = float(interval.strip()) + float(config["min_age"])

    def prefix(self, label: str) -> str:
        return f"fault-{label}-{uuid.uuid4().hex[:6]}"

    def simple(
        self, label: str, fault: str, inject, timeout: float | None = None, duration: float = 0
    ) -> Row:
        duration = duration or self.duration
        prefix = self.prefix(label)
        ids = submit(self.host, prefix, self.count, duration)
        wait_started(self.host, prefix)
        time.sleep(0.5)
        began = time.monotonic()
        note = inject() or ""
        budget = timeout or (self.count * duration * 3 + 60)
        final, seconds = drain(self.host, prefix, ids, began, budget, duration)
        row = row_from(fault, self.broker, ids, final, seconds)
        row.note = note
        return row

    # 1
    def kill_pool_process(self) -> Row:
        def inject():
            self.host.ok(f"kill -KILL {busy_child(self.host)}")
            return "task_reject_on_worker_lost requeues the task at once"

        # 10 s tasks: on a loaded CI machine finding the start and the child takes seconds, and
        # with 2 s tasks the kill could land between two tasks (or after the last), killing an
        # idle process: no task to requeue, and the row's started-twice check fails.
        return self.simple(
            "pool-kill", "SIGKILL of the pool process running a task", inject, duration=10.0
        )

    # 2
    def kill_main_process(self) -> Row:
        def inject():
            self.host.ok(f"kill -KILL {self.host.main_pid(UNIT)}")
            if self.broker == "redis":
                return (
                    f"Redis: the unacked-task timer gives the running and reserved tasks back "
                    f"(within {self.reclaim:g} s)"
                )
            return "RabbitMQ: the closed connection returns unacked messages at once"

        timeout = self.reclaim + self.count * self.duration * 3 + 90
        return self.simple("main-kill", "SIGKILL of the worker's main process", inject, timeout)

    # 3
    def restart_worker(self) -> Row:
        def inject():
            started = time.monotonic()
            self.host.ok(f"systemctl restart {UNIT}", timeout=600)
            return f"warm shutdown: restart took {time.monotonic() - started:.1f} s"

        return self.simple("restart", "systemctl restart of the worker", inject)

    # 4
    def stop_worker(self) -> Row:
        stop_timeout = self.host.ok(
            f"systemctl show --value --property=TimeoutStopUSec {UNIT}"
        ).strip()

        def inject():
            started = time.monotonic()
            self.host.ok(f"systemctl stop {UNIT}", timeout=900)
            stopped = time.monotonic() - started
            self.stop_seconds = round(stopped, 1)
            time.sleep(2)
            self.host.ok(f"systemctl start {UNIT}")
            return (
                f"stop waited {stopped:.1f} s for the running task (TimeoutStopSec={stop_timeout}"
                " = hard time limit + margin; a task cannot outlive its hard time limit, so the"
                " stop timeout is never reached)"
            )

        row = self.simple("stop", "systemctl stop, then start, while a task runs", inject)
        row.extra["stop_seconds"] = self.stop_seconds
        return row

    # 5
    def restart_broker(self) -> Row:
        unit = broker_unit(self.broker)

        def inject():
            self.host.ok(f"systemctl restart {unit}", timeout=300)
            return f"{unit} restarted with tasks running and queued"

        return self.simple("broker-restart", "broker restart with a backlog queued", inject)

    # 6
    def reboot(self) -> Row:
        host = self.host

        def inject():
            subprocess.run(
                ["docker", "kill", "--signal=SIGRTMIN+3", host.container],
                check=True,
                capture_output=True,
            )
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                state = subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Running}}", host.container],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                if state == "false":
                    break
                time.sleep(1)
            subprocess.run(["docker", "start", host.container], check=True, capture_output=True)
            host.wait_booted()
            down = [
                unit
                for unit in (broker_unit(self.broker), UNIT, BEAT, WEB)
                if host.run(f"systemctl is-active {unit}").stdout.strip() != "active"
                and not _eventually_active(host, unit)
            ]
            return "every service came back by itself" if not down else f"NOT back: {down}"

        timeout = self.reclaim + self.count * self.duration * 3 + 120
        return self.simple("reboot", "host reboot with a backlog queued", inject, timeout)

    # 7
    def broker_outage(self) -> Row:
        unit = broker_unit(self.broker)
        outage = 60 if self.full else 20
        host = self.host

        def inject():
            before = host.manage_json("heartbeat_status")["count"]
            host.ok(f"systemctl stop {unit}", timeout=300)
            time.sleep(outage)
            host.ok(f"systemctl start {unit}", timeout=300)
            started = time.monotonic()
            healthy = _wait_health(host, 180)
            self._outage = {
                "heartbeats_before": before,
                "health_back_seconds": round(time.monotonic() - started, 1) if healthy else None,
            }
            back = self._outage["health_back_seconds"]
            return f"broker down {outage} s; /health/ back to 200 after {back} s"

        began = time.monotonic()
        # The budget counts from before the outage, and on Redis a task prefetched when the
        # broker went away comes back through the unacked-task timer: both belong in it (as in
        # kill_main_process), or a slow machine reads "lost" for "not back yet".
        timeout = outage + self.reclaim + self.count * self.duration * 3 + 90
        row = self.simple("outage", f"broker unreachable for {outage} s", inject, timeout)
        interval = _heartbeat_interval(host)
        time.sleep(interval * 2)
        after = host.manage_json("heartbeat_status")["count"]
        row.extra.update(self._outage)
        # Beat must not double-fire to catch up: at most one run per interval of the whole
        # window (outage included), plus one.
        row.extra["heartbeats_in_window"] = after - self._outage["heartbeats_before"]
        row.extra["heartbeats_allowed"] = int((time.monotonic() - began) / interval) + 1
        return row

    # 8
    def new_release(self) -> Row:
        if not self.release_cmd:
            return Row(fault="new release while tasks run", broker=self.broker, note="skipped")
        release = f"fault-{uuid.uuid4().hex[:6]}"

        def inject():
            started = time.monotonic()
            result = subprocess.run(
                [*self.release_cmd, "-e", f"django_celery_release={release}"],
                capture_output=True,
                text=True,
                timeout=1200,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(result.stdout[-3000:])
            return f"release {release} rolled out in {time.monotonic() - started:.0f} s"

        return self.simple("release", "new release rolled out while tasks run", inject)

    # 9
    def beat_down(self) -> Row:
        host = self.host
        interval = _heartbeat_interval(host)
        down = interval * (6 if self.full else 3)
        host.ok(f"systemctl stop {BEAT}")
        time.sleep(down)
        # One process on the host times each heartbeat it sees (polling every 0.2 s), so the
        # window is not widened by the start-up of a manage command on a busy machine; it runs
        # as the app's user, so the shell around it starts beat once it is watching.
        limit = interval * 2 + 30
        code = (
            "import json, time\n"
            "from demo.models import Heartbeat\n"
            "def count():\n"
            "    return sum(Heartbeat.objects.values_list('count', flat=True))\n"
            "last = count()\n"
            "print('watching', flush=True)\n"
            "began = time.monotonic()\n"
            "seen = []\n"
            f"while time.monotonic() - began < {limit} and len(seen) < 3:\n"
            "    now = count()\n"
            "    seen += [round(time.monotonic() - began, 1)] * (now - last)\n"
            "    last = now\n"
            "    time.sleep(0.2)\n"
            "print(json.dumps(seen))\n"
        )
        out_file = f"/run/{NAME}-fault-heartbeats.out"
        script = (
            f"{MANAGE} shell -c {shlex.quote(code)} > {out_file} 2>&1 & "
            f"for i in $(seq 300); do grep -q watching {out_file} && break; sleep 0.2; done; "
            # Never start beat before the watcher counted: its first heartbeat would be missed.
            f"grep -q watching {out_file} || {{ cat {out_file}; kill %1; exit 3; }}; "
            f"systemctl start {BEAT}; wait; cat {out_file}; rm -f {out_file}"
        )
        out = host.ok(script, timeout=limit + 180)
        seen = json.loads(out.strip().splitlines()[-1])
        window = interval * 0.8
        burst = len([t for t in seen if seen and t - seen[0] < window])
        row = Row(fault=f"beat stopped for {down:g} s", broker=self.broker)
        row.extra["heartbeats_right_after_start"] = burst
        row.extra["heartbeat_seconds_after_start"] = seen
        if not seen:
            row.note = f"beat started, but NOT back: no heartbeat within {limit:g} s"
            return row
        row.note = (
            f"{burst} heartbeat(s) within {window:g} s of the first one after beat started: the "
            f"missed runs are not replayed (one run at most, then every {interval:g} s)"
        )
        return row


def _heartbeat_interval(host: Host) -> float:
    value = host.run(f"sed -n 's/^CELERY_HEARTBEAT_INTERVAL=//p' /etc/{NAME}/{NAME}.env").stdout
    return float(value.strip().strip("'\"") or 10)


def _until(predicate, timeout: float, interval: float = 1.0) -> bool:
    """Call predicate every interval seconds until it is true (True) or timeout passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _eventually_active(host: Host, unit: str, timeout: float = 60) -> bool:
    return _until(
        lambda: host.run(f"systemctl is-active {unit}").stdout.strip() == "active", timeout
    )


def _wait_health(host: Host, timeout: float) -> bool:
    code = (
        "import urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen('http://127.0.0.1:8000/health/', timeout=10).status)\n"
        "except Exception as exc:\n"
        "    print(getattr(exc, 'code', 0))\n"
    )
    return _until(
        lambda: host.run(f"python3 -c {shlex.quote(code)}").stdout.strip() == "200", timeout
    )


def problems(row: Row) -> list[str]:
    """What makes a row fail: a lost task, a service that did not come back, beat firing more
    than once per interval."""
    found = []
    if row.lost:
        found.append(f"{row.lost} of {row.submitted} tasks lost")
    if "NOT back" in row.note:
        found.append(row.note)
    if row.extra.get("heartbeats_right_after_start", 0) > 1:
        found.append("beat replayed missed runs after it started")
    if row.extra.get("heartbeats_in_window", 0) > row.extra.get("heartbeats_allowed", 10**9):
        found.append("beat fired more than once per interval around the outage")
    if "health_back_seconds" in row.extra and row.extra["health_back_seconds"] is None:
        found.append("/health/ did not come back to 200")
    return found


ROWS = [
    "kill_pool_process",
    "kill_main_process",
    "restart_worker",
    "stop_worker",
    "restart_broker",
    "reboot",
    "broker_outage",
    "new_release",
    "beat_down",
]


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | submitted | completed | lost | started twice | ran twice "
        "| last done after (s) | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        extra = "; ".join(f"{k}={v}" for k, v in r.extra.items() if k != "row_seconds")
        note = r.note + (f" ({extra})" if extra else "")
        lines.append(
            f"| {r.fault} | {r.submitted or ''} | {r.completed if r.submitted else ''} | "
            f"{r.lost if r.submitted else ''} | {r.started_twice if r.submitted else ''} | "
            f"{r.ran_twice if r.submitted else ''} | {r.recovery_seconds or ''} | {note} |"
        )
    return "\n".join(lines)


DOC_HEADER = """# Reliability: faults injected, tasks counted

Written by `scripts/faults.py` (do not edit the tables by hand). Each row starts from a
converged single host running the `slow` pool (concurrency 1), submits slow tasks with unique
ids so that one runs and the rest wait in the queue, injects one fault, and counts the ids that
started and completed (the sample app's `demo.tasks.slow` records both). "started twice" means
a re-execution began (a redelivery); "ran twice" means a task completed twice. "last done after"
counts from the fault to the last completion. A row fails when a task is lost, a service does
not come back by itself, or beat fires more than once per interval.

CI runs the short form of every row in the `default` (Redis) and `rabbitmq` scenarios
(`molecule/*/tests/test_zzzz_faults.py`); the tables below are the long form (`--full`: more
tasks, longer outages), run on the lab:

    bash scripts/lab up
    python scripts/faults.py --container django-celery-lab --full --doc docs/RELIABILITY.md \\
        --release-cmd "ansible-playbook -i inventory/lab site.yml -e @VARS"

"""


def host_facts(host: Host, broker: str) -> str:
    debian = host.ok("cat /etc/debian_version").strip()
    version = host.ok(
        "redis-server --version | cut -d' ' -f3"
        if broker == "redis"
        else "dpkg-query -W -f '${Version}' rabbitmq-server"
    ).strip()
    return f"Debian {debian}, {broker} {version.removeprefix('v=')}"


def write_doc(path: Path, broker: str, section: str) -> None:
    text = path.read_text() if path.exists() else DOC_HEADER
    begin, end = f"<!-- faults:{broker}:begin -->", f"<!-- faults:{broker}:end -->"
    block = f"{begin}\n{section}\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--full", action="store_true", help="long forms (more tasks, longer)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--release-cmd", default="", help="command that rolls out a release")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--doc", type=Path, help="update this broker's table in this file")
    args = parser.parse_args(argv)

    host = Host(args.container)
    suite = Suite(host, args.full, shlex.split(args.release_cmd) if args.release_cmd else None)
    rows = []
    for name in args.rows.split(","):
        started = time.monotonic()
        row = getattr(suite, name)()
        row.extra["row_seconds"] = round(time.monotonic() - started)
        rows.append(row)
        print(json.dumps(asdict(row)), flush=True)
    print(table(rows))
    if args.doc:
        heading = "Redis" if suite.broker == "redis" else "RabbitMQ"
        section = (
            f"## {heading}\n\n{time.strftime('%Y-%m-%d')}, {host_facts(host, suite.broker)}, "
            f"{'long' if args.full else 'short'} form"
            + (
                f", visibility timeout {suite.visibility:g} s, dead workers' tasks given back "
                f"within {suite.reclaim:g} s"
                if suite.broker == "redis"
                else ""
            )
            + f":\n\n    python scripts/faults.py {shlex.join(sys.argv[1:])}"
            f"\n\n{table(rows)}\n"
        )
        write_doc(args.doc, suite.broker, section)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    bad = [r.fault for r in rows if problems(r)]
    if bad:
        print(f"FAILED rows: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
