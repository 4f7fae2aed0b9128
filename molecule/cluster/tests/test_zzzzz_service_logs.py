"""The logs of the services the fleet runs, read after every other test of the scenario (this
module sorts last): nodes killed and frozen, hosts rebooted and replaced, passwords rotated;
what those logs say of lost data or crashed processes fails here (molecule/service_logs.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from fleet import BROKER, HA_BROKERS, NAME, node
from service_logs import postgresql_messages, rabbitmq_log, redis_log

testinfra_hosts = [f"ansible://{BROKER}"]

IDLE_SESSION_ENDED = ("FATAL", "terminating connection due to idle-session timeout")
# test_password_rotation.py checks once that the retired login cannot log in: the one refusal
# the session makes on purpose. A service still using that login would add more.
ROTATION_PROBE = ("FATAL", f'role "{NAME}" is not permitted to log in')


def test_redis_log_tells_of_no_failed_save_or_refused_write():
    log = redis_log(node(BROKER))
    assert log.entries > 0, "no entry of this session read: has the log format changed?"
    assert log.trouble == []


def test_postgresql_log_has_only_the_refusal_the_rotation_test_made():
    messages = postgresql_messages(node(BROKER))
    del messages[IDLE_SESSION_ENDED]
    assert messages == Counter({ROTATION_PROBE: 1})


def test_postgresql_ended_one_silent_beat_lock_session_the_one_of_the_frozen_beat_host():
    """test_ha.py freezes the active beat host once; PostgreSQL ends its session (and so frees
    its lock) by idle_session_timeout. A holder that fell silent on a live host would add more:
    the lock would have changed hands without a fault."""
    assert postgresql_messages(node(BROKER))[IDLE_SESSION_ENDED] == 1


@pytest.mark.parametrize("name", sorted(HA_BROKERS))
def test_no_rabbitmq_node_logged_a_crashed_process(name):
    """A node killed or frozen writes no crash report on the others; one stopped at a reboot
    before its port mapper (its unit's drop-in) writes none either. (web's node was replaced
    by test_ha.py, its log with it: what it wrote since it rejoined.)"""
    log = rabbitmq_log(node(name))
    assert log.entries > 0, "no entry of this session read: has the log format changed?"
    assert log.trouble == []
