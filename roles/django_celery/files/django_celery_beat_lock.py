"""Run Celery beat on one host of several: a PostgreSQL advisory lock picks the host.

    python -m django_celery_beat_lock --name NAME --timeout SECONDS --lease FILE -- CELERY BEAT...

Every beat host runs this under its beat unit. It opens a session on the project's database
(DATABASE_URL) and waits until pg_try_advisory_lock gives it the project's lock; it then starts
beat as its child and checks the session every second. PostgreSQL ends a session idle for
--timeout seconds (idle_session_timeout), which frees its lock: a host that died, froze or lost
the network loses the lock that long after its last check, and a standby takes it.

Fencing: a beat must not send a task once its lock may be gone. After each good check this
process writes a lease, a CLOCK_MONOTONIC deadline half the timeout ahead, to --lease; beat's
scheduler (LockedScheduler, below) sends nothing past it. CLOCK_MONOTONIC runs on while a host
is frozen, so a host that resumes after losing its lock finds its lease expired, and this
process stops beat. The lease ends before PostgreSQL frees the lock (half the timeout, against
the whole), so two beats never send at once while the clocks run at one speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from urllib.parse import unquote, urlsplit

CHECK_INTERVAL = 1.0
# The exit code of a beat that lost its lock: systemd starts the unit again (a standby now).
LOST = 75


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lock_key(name: str) -> int:
    """The project's advisory lock: a signed 64-bit number from its name."""
    digest = hashlib.sha256(f"django_celery beat {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connection_options(url: str, name: str, timeout: int) -> dict:
    """libpq parameters for the lock's session: the server ends it once it has been idle for
    `timeout` seconds; the client gives up on a silent server after half of it."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"the beat lock needs a PostgreSQL DATABASE_URL, not {parts.scheme}://")
    half_ms = timeout * 500
    return {
        "host": parts.hostname or "",
        "port": parts.port or 5432,
        "dbname": unquote(parts.path.lstrip("/")),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "application_name": f"{name}-beat-lock",
        "connect_timeout": max(2, timeout // 2),
        "tcp_user_timeout": half_ms,
        "keepalives": 1,
        "keepalives_idle": max(1, timeout // 4),
        "keepalives_interval": 1,
        "keepalives_count": 2,
        "options": f"-c idle_session_timeout={timeout * 1000}",
    }


def connect(options: dict):
    """A session in autocommit mode, with psycopg 3 or psycopg2 (whichever the project has)."""
    try:
        import psycopg
    except ImportError:
        import psycopg2

        connection = psycopg2.connect(**options)
        connection.autocommit = True
        return connection
    return psycopg.connect(**options, autocommit=True)


def query_one(connection, sql: str, params: tuple = ()):
    cursor = connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]
    finally:
        cursor.close()


def write_lease(path: str, deadline: float) -> None:
    temporary = f"{path}.new"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{deadline:.3f}\n")
    os.replace(temporary, path)


def read_lease(path: str) -> float:
    try:
        with open(path, encoding="ascii") as handle:
            return float(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


class Runner:
    """Wait for the lock, then run beat while the session holds it. Every effect (database,
    clock, sleep, child process) comes in as an argument: tests/test_beat_lock.py drives it."""

    def __init__(
        self,
        *,
        open_session,
        key,
        command,
        lease_path,
        timeout,
        clock=time.monotonic,
        sleep=time.sleep,
        spawn=subprocess.Popen,
    ):
        self.open_session = open_session
        self.key = key
        self.command = command
        self.lease_path = lease_path
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.spawn = spawn
        self.session = None
        self.child = None
        self.stopping = False
        # When the last good answer was asked for: PostgreSQL's idle timer started no earlier.
        self.asked = 0.0

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception:  # noqa: BLE001 - a broken session is closed anyway
                pass
        self.session = None

    def acquire(self) -> bool:
        """Wait until this session holds the lock (True), or a stop was asked for (False)."""
        waiting_said = False
        while not self.stopping:
            try:
                if self.session is None:
                    self.session = self.open_session()
                self.asked = self.clock()
                if query_one(self.session, "SELECT pg_try_advisory_lock(%s)", (self.key,)):
                    return True
                if not waiting_said:
                    log("standby: beat runs on another host, which holds the lock")
                    waiting_said = True
            except Exception as error:  # noqa: BLE001 - any database error: start over
                log(f"cannot reach the database for the beat lock: {error}")
                self.close()
            self.sleep(CHECK_INTERVAL)
        return False

    def stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.terminate()
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def hold(self) -> int:
        """Run beat while the lock is held; its exit code, or LOST once the lock may be gone."""
        # The lease counts from when the lock was asked for, not from the answer: the server's
        # idle timer may have started before a freeze that delayed reading it.
        checked = self.asked
        write_lease(self.lease_path, checked + self.timeout / 2)
        log(f"holding the beat lock: starting beat (lease {self.timeout / 2:.0f} s)")
        self.child = self.spawn(self.command)
        while True:
            code = self.child.poll()
            if code is not None:
                # Stopped with the unit (systemd signals both): a clean stop. A beat killed by a
                # signal exits 128 + its number, as a shell reports it.
                return 0 if self.stopping else (code if code >= 0 else 128 - code)
            if self.stopping:
                self.stop_child()
                return 0
            self.sleep(CHECK_INTERVAL)
            now = self.clock()
            if now - checked >= self.timeout / 2:
                # Frozen (or the check hung) for half the timeout: the lease is out, the lock
                # may be gone.
                log(f"no check of the beat lock for {now - checked:.0f} s: stopping beat")
                self.stop_child()
                return LOST
            asked = self.clock()
            try:
                query_one(self.session, "SELECT 1")
            except Exception as error:  # noqa: BLE001 - the session, and its lock, are gone
                log(f"lost the beat lock's session ({error}): stopping beat")
                self.stop_child()
                return LOST
            checked = asked
            write_lease(self.lease_path, checked + self.timeout / 2)

    def run(self) -> int:
        try:
            if not self.acquire():
                return 0
            return self.hold()
        finally:
            write_lease(self.lease_path, 0.0)
            self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the project (names the lock)")
    parser.add_argument(
        "--timeout", type=int, default=10, help="seconds before a silent holder loses it"
    )
    parser.add_argument("--lease", required=True, help="the lease file beat's scheduler reads")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the beat command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the beat command after --")
    options = connection_options(os.environ["DATABASE_URL"], args.name, args.timeout)
    runner = Runner(
        open_session=lambda: connect(options),
        key=lock_key(args.name),
        command=command,
        lease_path=args.lease,
        timeout=args.timeout,
    )

    def stop(signum, _frame):
        runner.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return runner.run()


def lease_valid(path: str | None = None, clock=time.monotonic) -> bool:
    """Whether beat may send: the lease (DJANGO_CELERY_BEAT_LEASE's file) runs past now."""
    path = path or os.environ.get("DJANGO_CELERY_BEAT_LEASE", "")
    return bool(path) and clock() < read_lease(path)


def __getattr__(name: str):
    # Built on first use: the runner above imports neither Celery nor Django.
    if name != "LockedScheduler":
        raise AttributeError(name)
    from django_celery_beat.schedulers import DatabaseScheduler

    class LockedScheduler(DatabaseScheduler):
        """django-celery-beat's scheduler that sends nothing once its lease ran out."""

        def apply_async(self, entry, producer=None, advance=True, **kwargs):
            if not lease_valid():
                log(f"the beat lock's lease ran out: not sending {entry.name}; stopping beat")
                os._exit(LOST)
            return super().apply_async(entry, producer, advance, **kwargs)

    globals()["LockedScheduler"] = LockedScheduler
    return LockedScheduler


if __name__ == "__main__":
    sys.exit(main())
