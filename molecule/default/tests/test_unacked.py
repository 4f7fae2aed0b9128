"""The role's unacked-task command and timer (Redis): a task a live worker runs is reported as
held and never given back; the timer runs on the beat host. (That a dead worker's tasks come
back within one round is the fault suite's main-process row.)"""

import json
import time

from conftest import (
    NAME,
    run_ok,
    send_slow_tasks,
    unique_id,
    wait_for_slow_tasks,
    wait_for_started,
)

UNACKED = f"/usr/local/bin/{NAME}-unacked"
TIMER = f"{NAME}-unacked.timer"
SERVICE = f"{NAME}-unacked.service"


def rounds_since(host, cursor: str) -> list[dict]:
    """The reports the timer's rounds printed to the journal since a cursor."""
    out = host.check_output(f"journalctl -u {SERVICE} --after-cursor={cursor!r} -o cat --no-pager")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def journal_cursor(host) -> str:
    out = host.check_output("journalctl -n 0 --show-cursor --no-pager")
    return out.split("-- cursor: ", 1)[1].strip()


def test_unacked_timer_runs_on_the_beat_host(host):
    timer = host.service(TIMER)
    assert (timer.is_running, timer.is_enabled) == (True, True)


def test_tasks_a_live_worker_holds_are_reported_held_and_never_given_back(host, settings):
    """A task running longer than the minimum age plus a round, and a countdown task that the
    worker holds first as scheduled, then, once due, as reserved behind the running one (the
    slow pool runs one task at a time): the command counts both among the old entries and
    neither as orphaned, the timer's rounds give neither back, and each starts once."""
    config = json.loads(host.file(f"/etc/{NAME}/unacked.json").content_string)
    interval = settings["django_celery_reclaim_interval"]
    duration = config["min_age"] + interval + 8
    assert duration < settings["django_celery_task_soft_time_limit"], (
        "the scenario's limits are too short"
    )
    cursor = journal_cursor(host)
    prefix = unique_id("held")
    # The countdown task first: an idle worker takes it at once and holds it until its ETA
    # (with one process and prefetch 1, a busy worker would leave it in the queue).
    countdown = (
        "from proj.celery import app; "
        f"app.send_task('demo.tasks.slow', args=['{prefix}-eta', 1], queue='slow', "
        f"countdown={config['min_age'] + 5})"
    )
    run_ok(host, f"{NAME}-manage", "shell", "-c", countdown)
    time.sleep(1)
    send_slow_tasks(host, prefix, 1, duration)
    assert wait_for_started(host, prefix), "no start"
    time.sleep(config["min_age"] + 2)
    report = json.loads(run_ok(host, UNACKED))
    assert (report["older_than_min_age"], report["orphaned"], report["not_answering"]) == (2, 0, [])
    runs = wait_for_slow_tasks(host, prefix, 2, timeout=duration + 40)
    assert (runs["started"], runs["completed"], runs["started_twice"]) == (2, 2, 0), runs
    rounds = [r for r in rounds_since(host, cursor) if r["older_than_min_age"]]
    assert rounds, "no round of the timer saw the tasks"
    assert [r["reclaimed"] for r in rounds] == [0] * len(rounds)
