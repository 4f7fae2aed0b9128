"""Unit tests for the management commands (no broker needed)."""

import json
import socket
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

from demo import tasks
from demo.management.commands.run_task import parse_arg
from demo.models import SlowTaskCompletion


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


@pytest.mark.django_db
def test_migration_installed_the_beat_schedule():
    add = PeriodicTask.objects.get(name="add-every-30-seconds")
    assert (add.task, json.loads(add.args)) == ("demo.tasks.add", [16, 16])
    assert (add.interval.every, add.interval.period) == (30, "seconds")
    beat = PeriodicTask.objects.get(name="heartbeat")
    assert beat.task == "demo.tasks.heartbeat"
    assert beat.interval.every == 10 and beat.enabled


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent_and_applies_interval_changes(settings):
    PeriodicTask.objects.filter(name__in=["add-every-30-seconds", "heartbeat"]).delete()
    assert run("setup_periodic_tasks").splitlines() == [
        "add-every-30-seconds: created",
        "heartbeat: created",
    ]
    assert run("setup_periodic_tasks").splitlines() == [
        "add-every-30-seconds: unchanged",
        "heartbeat: unchanged",
    ]
    settings.CELERY_HEARTBEAT_INTERVAL = 7
    assert run("setup_periodic_tasks").splitlines() == [
        "add-every-30-seconds: unchanged",
        "heartbeat: updated",
    ]
    assert PeriodicTask.objects.get(name="heartbeat").interval.every == 7
    assert PeriodicTask.objects.filter(name="heartbeat").count() == 1
    assert "heartbeat: unchanged" in run("setup_periodic_tasks")


@pytest.mark.django_db
def test_heartbeat_status_before_and_after_a_beat():
    assert json.loads(run("heartbeat_status")) == {
        "last_run": None,
        "age_seconds": None,
        "count": 0,
    }
    tasks.heartbeat.apply()
    report = json.loads(run("heartbeat_status"))
    assert report["count"] == 1
    assert 0 <= report["age_seconds"] < 60
    assert report["last_run"]


@pytest.mark.django_db
def test_slow_task_report_counts_starts_completions_and_reruns():
    for task_id in ("r-1", "r-2", "r-2", "other"):
        tasks.slow.apply(args=(task_id, 0))
    # A start whose run never finished (its process was killed): started, not completed.
    SlowTaskCompletion.objects.create(task_id="r-3", starts=1)
    assert json.loads(run("slow_task_report", "--prefix", "r-")) == {
        "started": 3,
        "completed": 2,
        "started_twice": 1,
        "duplicated": 1,
        "ids": ["r-1", "r-2"],
        "hosts": [socket.gethostname()],
    }


@pytest.mark.django_db
def test_slow_task_report_waits_until_the_tasks_completed():
    tasks.slow.apply(args=("w-1", 0))
    report = json.loads(run("slow_task_report", "--prefix", "w-", "--until-completed", "1"))
    assert (report["completed"], report["reached"]) == (1, True)


@pytest.mark.django_db
def test_slow_task_report_stops_waiting_at_the_timeout_and_says_so():
    tasks.slow.apply(args=("t-1", 0))
    started = time.monotonic()
    out = run(
        "slow_task_report",
        "--prefix",
        "t-",
        "--until-completed",
        "2",
        "--timeout",
        "1",
        "--interval",
        "0.2",
    )
    report = json.loads(out)
    assert (report["completed"], report["reached"]) == (1, False)
    assert 1 <= time.monotonic() - started < 10


def test_run_task_parses_args_as_json_with_string_fallback():
    assert [parse_arg(a) for a in ["2", "1.5", "true", "[1, 2]", '"x"', "hello"]] == [
        2,
        1.5,
        True,
        [1, 2],
        "x",
        "hello",
    ]


def test_run_task_rejects_bad_kwargs():
    with pytest.raises(CommandError, match="--kwargs"):
        run("run_task", "demo.tasks.add", "--kwargs", "{not json")
