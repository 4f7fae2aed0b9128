"""What the services the role starts wrote in their logs during a test session: a service that
starts and answers can still be losing data, and its log says so. Each scenario's last test
module (test_zzzzz_service_logs.py) reads them after every other test, faults included.

Only entries written since this module was imported count (pytest imports every test module
before the first test runs; the test hosts share the controller's clock), so a development
host that ran the tests before is judged on this session alone. DJANGO_CELERY_LOGS_SINCE (an
ISO date and time; UTC when it names no offset) moves that start back, to judge one module
run alone by hand.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime
from typing import NamedTuple


def _since(value: str) -> datetime:
    given = datetime.fromisoformat(value)
    return (given if given.tzinfo else given.replace(tzinfo=UTC)).astimezone(UTC)


SESSION_START = (
    _since(os.environ["DJANGO_CELERY_LOGS_SINCE"])
    if os.environ.get("DJANGO_CELERY_LOGS_SINCE")
    else datetime.now(UTC)
)

# Every Redis instance the role runs on the host: redis-server.log, redis-server-NAME.log.
REDIS_LOG_GLOB = "/var/log/redis/redis-server*.log"
# 571:M 07 Dec 2026 08:13:55.123 # message
REDIS_ENTRY = re.compile(r"^\d+:[A-Z] (\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2})\.\d+ (.) (.*)$")
# What a failing Redis writes: a save or AOF write that failed, a refused write (MISCONF), a
# truncated or corrupt file found at start, memory refused.
REDIS_TROUBLE = re.compile(
    r"error|fail|can't|cannot|misconf|\boom\b|corrupt|truncat|short read|bad file format|"
    r"unrecoverable|out of memory",
    re.IGNORECASE,
)
# The two warnings a test container always causes: it cannot set the kernel's overcommit (a
# sysctl of the machine), and has no IPv6 loopback to listen on.
REDIS_CONTAINER_WARNINGS = ("Memory overcommit must be enabled", "listening socket ::1:")

POSTGRESQL_LOG_GLOB = "/var/log/postgresql/postgresql-*-main.log"
# 2026-12-07 08:39:15.053 UTC [18287] djangoapp@djangoapp FATAL:  message
POSTGRESQL_ENTRY = re.compile(
    r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\.\d+ UTC \[\d+\] \S* ?"
    r"(WARNING|ERROR|FATAL|PANIC):  (.*)$"
)


class Reading(NamedTuple):
    """A log read for this session: how many of its entries were parsed (none would mean a
    format this module does not know, not a clean log), and the ones that tell of trouble, each
    prefixed with its file."""

    entries: int
    trouble: list[str]


def redis_log(host) -> Reading:
    """The session's entries of the host's Redis logs, and those that tell of lost or refused
    data."""
    entries, found = 0, []
    for line in host.check_output(f"grep -H '' {REDIS_LOG_GLOB}").splitlines():
        _, _, entry = line.partition(":")
        match = REDIS_ENTRY.match(entry)
        if not match:
            continue
        stamp, _, text = match.groups()
        when = datetime.strptime(stamp, "%d %b %Y %H:%M:%S").replace(tzinfo=UTC)
        if when < SESSION_START.replace(microsecond=0):
            continue
        entries += 1
        if REDIS_TROUBLE.search(text) and not any(w in text for w in REDIS_CONTAINER_WARNINGS):
            found.append(line)
    return Reading(entries, found)


# A lock request that cancels autovacuum on a table: PostgreSQL logs it as an ERROR, and
# autovacuum comes back to the table later.
POSTGRESQL_HARMLESS = re.compile(r"^canceling autovacuum task$")


def postgresql_messages(host) -> Counter:
    """{(severity, message): count} of the session's WARNING, ERROR, FATAL and PANIC entries,
    less cancelled autovacuum runs."""
    found: Counter = Counter()
    for line in host.check_output(f"cat {POSTGRESQL_LOG_GLOB}").splitlines():
        match = POSTGRESQL_ENTRY.match(line)
        if not match:
            continue
        stamp, severity, text = match.groups()
        when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        if when >= SESSION_START.replace(microsecond=0) and not POSTGRESQL_HARMLESS.match(text):
            found[(severity, text)] += 1
    return found


RABBITMQ_LOG_GLOB = "/var/log/rabbitmq/rabbit@*.log"
# 2026-12-07 09:07:09.833101+00:00 [error] <0.476.0> ** Generic server rabbit_disk_monitor ...
RABBITMQ_ENTRY = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\.\d+\+00:00 \[(\w+)\] (.*)$")
# An Erlang process that died: a gen_server's termination report, or OTP's crash report.
RABBITMQ_CRASH = re.compile(r"\*\* Generic server \S+ terminating|crasher:|CRASH REPORT")


def rabbitmq_log(host) -> Reading:
    """The session's entries of the RabbitMQ node's logs, and its crash reports."""
    entries, found = 0, []
    for line in host.check_output(f"grep -H '' {RABBITMQ_LOG_GLOB}").splitlines():
        _, _, entry = line.partition(":")
        match = RABBITMQ_ENTRY.match(entry)
        if not match:
            continue
        when = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
        if when < SESSION_START.replace(microsecond=0):
            continue
        entries += 1
        if RABBITMQ_CRASH.search(match.group(3)):
            found.append(line)
    return Reading(entries, found)
