"""RabbitMQ's log after every other test of the session but the fault suite (which
test_zzzzz_service_logs.py follows, for crash reports): no crash, and no error beyond the
refusals the negative tests caused themselves.

The window is this test session (the host shares the controller's clock). The refusals the tests
expect are counted by rabbitmq_helpers.connect(): a refused login the app made itself (say, a
worker still using an old password after a rotation) shows up as one too many.
"""

import re
from collections import Counter
from datetime import datetime

import pytest
import rabbitmq_helpers

LOG_GLOB = "/var/log/rabbitmq/*.log"
ENTRY = re.compile(r"^(\S+ \S+) \[(\w+)\] (<[\d.]+>) (.*)$")
SERIOUS = {"error", "critical", "alert", "emergency"}
LOGIN_REFUSED = re.compile(r"login refused: user '([^']*)'")
VHOST_REFUSED = re.compile(r"access to vhost '[^']*' refused for user '([^']*)'")


def session_entries(host) -> list[tuple[str, str]]:
    """(level, text) of each log entry written during this session; an entry spans the lines
    that share its timestamp and Erlang process."""
    entries: dict = {}
    for line in host.check_output(f"cat {LOG_GLOB}").splitlines():
        match = ENTRY.match(line)
        if not match:
            continue
        stamp, level, pid, text = match.groups()
        when = datetime.fromisoformat(stamp.replace(" ", "T"))
        if when >= rabbitmq_helpers.SESSION_START:
            entries.setdefault((stamp, pid, level), []).append(text)
    return [(level, " ".join(lines)) for (_, _, level), lines in entries.items()]


@pytest.fixture(scope="module")
def entries(host):
    return session_entries(host)


def test_rabbitmq_log_has_no_crash_report(host):
    crashes = host.run(f"grep -il -e 'crash report' -e crasher {LOG_GLOB}").stdout
    assert crashes == "", crashes


def test_rabbitmq_log_has_no_unexpected_error(entries):
    unexpected = [
        text
        for level, text in entries
        if level in SERIOUS and not (LOGIN_REFUSED.search(text) or VHOST_REFUSED.search(text))
    ]
    assert not unexpected, unexpected


def test_rabbitmq_log_has_only_the_refused_logins_the_tests_made(entries):
    logged = Counter(
        ("ACCESS_REFUSED", m.group(1)) for _, text in entries if (m := LOGIN_REFUSED.search(text))
    )
    logged += Counter(
        ("NOT_ALLOWED", m.group(1)) for _, text in entries if (m := VHOST_REFUSED.search(text))
    )
    assert logged == Counter(rabbitmq_helpers.REFUSED), [t for _, t in entries if "refused" in t]
