"""Redis's log after every other test of the scenario, the fault suite included (this module
sorts last): the broker was restarted, stopped for an outage and the host rebooted with work
queued; none of that may have cost a failed save, a refused write or a truncated file
(molecule/service_logs.py)."""

from service_logs import redis_log


def test_redis_log_tells_of_no_failed_save_or_refused_write(host):
    log = redis_log(host)
    assert log.entries > 0, "no entry of this session read: has the log format changed?"
    assert log.trouble == []
