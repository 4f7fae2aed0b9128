"""The beat lock (roles/django_celery/files/django_celery_beat_lock.py), driven with a fake
database session, clock and child process. The molecule cluster scenario runs it for real
(molecule/cluster/tests/test_ha.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MODULE = (
    Path(__file__).resolve().parent.parent / "roles/django_celery/files/django_celery_beat_lock.py"
)
_spec = importlib.util.spec_from_file_location("django_celery_beat_lock", MODULE)
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Session:
    """A database session: answers pg_try_advisory_lock from `grants`, SELECT 1 until `dies_at`
    checks."""

    def __init__(self, grants=(True,), dies_at=None):
        self.grants = list(grants)
        self.checks = 0
        self.dies_at = dies_at
        self.closed = False

    def cursor(self):
        return Cursor(self)


class Cursor:
    def __init__(self, session):
        self.session = session
        self.row = None

    def execute(self, sql, params=()):
        if "pg_try_advisory_lock" in sql:
            self.row = (self.session.grants.pop(0) if self.session.grants else True,)
        else:
            self.session.checks += 1
            if self.session.dies_at is not None and self.session.checks >= self.session.dies_at:
                raise OSError("server closed the connection unexpectedly")
            self.row = (1,)

    def fetchone(self):
        return self.row

    def close(self):
        pass


class Child:
    """Beat: runs until `exits_after` polls (None: until stopped)."""

    def __init__(self, exits_after=None, code=0):
        self.polls = 0
        self.exits_after = exits_after
        self.code = code
        self.terminated = False

    def poll(self):
        self.polls += 1
        if self.terminated:
            return -15
        if self.exits_after is not None and self.polls > self.exits_after:
            return self.code
        return None

    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return -15

    def kill(self):
        self.terminated = True


def runner(tmp_path, session, child, clock, **kwargs):
    spawned = []

    def spawn(command):
        spawned.append(command)
        return child

    built = lock.Runner(
        open_session=lambda: session,
        key=lock.lock_key("ha"),
        command=["beat"],
        lease_path=str(tmp_path / "lease"),
        timeout=10,
        clock=clock,
        sleep=kwargs.get("sleep", clock.sleep),
        spawn=spawn,
    )
    return built, spawned


def test_a_standby_waits_for_the_lock_and_starts_beat_only_once_it_has_it(tmp_path):
    clock = Clock()
    session = Session(grants=[False, False, False, True])
    child = Child(exits_after=2, code=0)
    built, spawned = runner(tmp_path, session, child, clock)
    assert built.run() == 0
    assert spawned == [["beat"]]
    # Three refusals, a second apart, before the lock came.
    assert clock.now >= 103.0


def test_beat_is_stopped_and_the_exit_says_lost_when_the_session_dies(tmp_path):
    clock = Clock()
    session = Session(dies_at=3)
    child = Child()
    built, _ = runner(tmp_path, session, child, clock)
    assert built.run() == lock.LOST
    assert child.terminated


def test_a_frozen_holder_stops_beat_before_checking_again(tmp_path):
    """After a pause longer than half the timeout the lock may be gone: beat stops, even though
    the (fake) session still answers."""
    clock = Clock()
    session = Session()
    child = Child()
    sleeps = iter([1.0, 1.0, 6.0])

    def sleep(_seconds):
        clock.now += next(sleeps, 1.0)

    built, _ = runner(tmp_path, session, child, clock, sleep=sleep)
    assert built.run() == lock.LOST
    assert child.terminated
    assert session.checks == 2


def test_the_lease_runs_half_the_timeout_past_each_good_check_and_ends_with_the_runner(tmp_path):
    clock = Clock()
    session = Session()
    child = Child(exits_after=3)
    seen = []

    def sleep(seconds):
        clock.now += seconds
        seen.append(lock.read_lease(str(tmp_path / "lease")) - clock.now)

    built, _ = runner(tmp_path, session, child, clock, sleep=sleep)
    built.run()
    # Read just after a sleep of 1 s: the lease written at the last check had 5 s, 4 are left.
    assert seen and all(left == pytest.approx(4.0) for left in seen)
    assert not lock.lease_valid(str(tmp_path / "lease"), clock=clock)


def test_a_lease_in_the_past_or_missing_forbids_sending(tmp_path):
    path = tmp_path / "lease"
    assert not lock.lease_valid(str(path), clock=lambda: 1.0)
    lock.write_lease(str(path), 50.0)
    assert lock.lease_valid(str(path), clock=lambda: 49.0)
    assert not lock.lease_valid(str(path), clock=lambda: 50.0)


def test_the_session_is_ended_by_the_server_after_the_timeout_and_by_the_client_after_half():
    options = lock.connection_options("postgresql://ha%40x:p%2Fw@10.0.0.2:5433/ha_db", "ha", 10)
    assert options["options"] == "-c idle_session_timeout=10000"
    assert options["tcp_user_timeout"] == 5000
    assert (options["host"], options["port"], options["dbname"]) == ("10.0.0.2", 5433, "ha_db")
    assert (options["user"], options["password"]) == ("ha@x", "p/w")


def test_a_database_that_is_not_postgresql_is_refused():
    with pytest.raises(ValueError, match="PostgreSQL DATABASE_URL"):
        lock.connection_options("sqlite:///var/lib/ha/db.sqlite3", "ha", 10)


def test_each_project_has_its_own_lock():
    assert lock.lock_key("ha") != lock.lock_key("shop")
    assert -(2**63) <= lock.lock_key("ha") < 2**63


def test_the_lease_counts_from_when_the_check_was_asked_not_from_its_answer(tmp_path):
    """A check whose answer came 3 s late (a freeze while waiting) renews the lease from when it
    was asked: PostgreSQL's idle timer may have started then."""
    clock = Clock()
    child = Child(exits_after=2)

    class SlowSession(Session):
        def cursor(self):
            clock.now += 3.0
            return Cursor(self)

    built, _ = runner(tmp_path, SlowSession(), child, clock)
    leases = []
    real_write = lock.write_lease

    def spy(path, deadline):
        leases.append((deadline, clock.now))
        real_write(path, deadline)

    lock.write_lease = spy
    try:
        built.run()
    finally:
        lock.write_lease = real_write
    # Each lease written right after an answer ends 5 s after the ask, so 2 s after the answer.
    renewals = [deadline - now for deadline, now in leases if deadline > 0]
    assert renewals and all(left == pytest.approx(2.0) for left in renewals)


def test_a_beat_stopped_with_the_unit_is_a_clean_exit_and_a_killed_one_reports_its_signal(
    tmp_path,
):
    clock = Clock()
    stopped = Child(exits_after=1, code=-15)
    built, _ = runner(tmp_path, Session(), stopped, clock)
    built.stopping = False
    assert built.run() == 143
    clock = Clock()
    built, _ = runner(tmp_path, Session(), Child(exits_after=1, code=-15), clock)
    original_spawn = built.spawn

    def spawn_then_stop(command):
        built.stopping = True
        return original_spawn(command)

    built.spawn = spawn_then_stop
    assert built.run() == 0
