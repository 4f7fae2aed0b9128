"""RabbitMQ's log once more, after the fault suite too (this module sorts after it;
test_zzz_rabbitmq_log.py reads it before): workers killed, the broker restarted and stopped for
an outage, the host rebooted with work queued. No process of the node may have crashed
(molecule/service_logs.py)."""

from service_logs import rabbitmq_log


def test_no_rabbitmq_process_crashed_through_the_fault_suite(host):
    log = rabbitmq_log(host)
    assert log.entries > 0, "no entry of this session read: has the log format changed?"
    assert log.trouble == []
