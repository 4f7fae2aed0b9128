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


def read_session(host, pattern: str, parse, is_trouble) -> Reading:
    """Read the files matching pattern on the host: parse(entry) gives (time, text) for an entry
    it knows, else None; is_trouble(text) picks the entries to report."""
    entries, found = 0, []
    for line in host.check_output(f"grep -H '' {pattern}").splitlines():
        parsed = parse(line.partition(":")[2])
        if parsed is None or parsed[0] < SESSION_START.replace(microsecond=0):
            continue
        entries += 1
        if is_trouble(parsed[1]):
            found.append(line)
    return Reading(entries, found)


def _redis_entry(entry: str):
    match = REDIS_ENTRY.match(entry)
    if not match:
        return None
    when = datetime.strptime(match.group(1), "%d %b %Y %H:%M:%S").replace(tzinfo=UTC)
    return when, match.group(3)


def redis_log(host) -> Reading:
    """The session's entries of the host's Redis logs, and those that tell of lost or refused
    data."""
    return read_session(
        host,
        REDIS_LOG_GLOB,
        _redis_entry,
        lambda text: (
            bool(REDIS_TROUBLE.search(text))
            and not any(warning in text for warning in REDIS_CONTAINER_WARNINGS)
        ),
    )


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


def _rabbitmq_entry(entry: str):
    match = RABBITMQ_ENTRY.match(entry)
    if not match:
        return None
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC), match.group(3)


def rabbitmq_log(host) -> Reading:
    """The session's entries of the RabbitMQ node's logs, and its crash reports."""
    return read_session(
        host, RABBITMQ_LOG_GLOB, _rabbitmq_entry, lambda text: bool(RABBITMQ_CRASH.search(text))
    )
