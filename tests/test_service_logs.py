"""molecule/service_logs.py reads the logs of what the scenarios start: it must find the lines
that tell of trouble, in the formats Redis, PostgreSQL and RabbitMQ write, and only those of the
session."""

from __future__ import annotations

import importlib.util
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "service_logs", Path(__file__).resolve().parents[1] / "molecule" / "service_logs.py"
)
service_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(service_logs)
service_logs.SESSION_START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Host:
    """What testinfra's host gives the module: the output of one command."""

    def __init__(self, output: str):
        self.output = output

    def check_output(self, command: str) -> str:
        return self.output


REDIS = "/var/log/redis/redis-server-shop.log:571:M {day} Dec 2026 08:13:55.123 {level} {text}"
RABBITMQ = (
    "/var/log/rabbitmq/rabbit@web.log:2026-12-{day} 09:07:09.833101+00:00 [error] <0.1.0> {text}"
)
POSTGRESQL = "2026-12-{day} 08:39:15.053 UTC [18287] ha@ha {level}:  {text}"


def test_a_failed_redis_save_of_the_session_is_reported():
    lines = [
        REDIS.format(day="07", level="#", text="Background saving error"),
        REDIS.format(day="07", level="*", text="DB saved on disk"),
    ]
    log = service_logs.redis_log(Host("\n".join(lines)))
    assert log == service_logs.Reading(2, [lines[0]])


def test_the_warnings_every_container_causes_and_older_entries_are_not_trouble():
    lines = [
        REDIS.format(day="07", level="#", text="WARNING Memory overcommit must be enabled!"),
        REDIS.format(
            day="07", level="#", text="Could not create server TCP listening socket ::1:6379"
        ),
        REDIS.format(day="06", level="#", text="Background saving error"),
    ]
    assert service_logs.redis_log(Host("\n".join(lines))) == service_logs.Reading(2, [])


def test_a_log_in_an_unknown_format_reads_no_entry():
    log = service_logs.redis_log(Host("/var/log/redis/redis-server.log:Background saving error"))
    assert log.entries == 0


def test_a_rabbitmq_crash_report_of_the_session_is_reported_and_an_older_one_is_not():
    crash = RABBITMQ.format(day="07", text="** Generic server rabbit_disk_monitor terminating")
    older = RABBITMQ.format(day="06", text="  crasher:")
    log = service_logs.rabbitmq_log(Host(f"{crash}\n{older}"))
    assert log == service_logs.Reading(1, [crash])


def test_postgresql_errors_of_the_session_are_counted_less_cancelled_autovacuum_runs():
    lines = [
        POSTGRESQL.format(
            day="07", level="FATAL", text="terminating connection due to idle-session timeout"
        ),
        POSTGRESQL.format(
            day="07", level="FATAL", text="terminating connection due to idle-session timeout"
        ),
        POSTGRESQL.format(day="07", level="ERROR", text="canceling autovacuum task"),
        POSTGRESQL.format(day="06", level="PANIC", text="could not write to file"),
        POSTGRESQL.format(day="07", level="LOG", text="checkpoint starting: time"),
    ]
    found = service_logs.postgresql_messages(Host("\n".join(lines)))
    assert found == Counter({("FATAL", "terminating connection due to idle-session timeout"): 2})
