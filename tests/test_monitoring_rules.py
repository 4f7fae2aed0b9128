"""The role's Prometheus rules (templates/monitoring/rules.yml.j2), rendered with the role's
defaults and tested with promtool: each alert fires on the series its fault makes, only after
its "for", with the labels and summary an operator reads, and not on healthy figures.

promtool comes from Debian's prometheus package (scripts/setup.sh puts it in .tools/).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "django_celery"
PROMTOOL = ROOT / ".tools" / "usr" / "bin" / "promtool"
NAME = "djangoapp"


def render_rules(**overrides) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {key: value for key, value in defaults.items() if "monitoring" in key}
    values.update(
        {
            "django_celery_name": NAME,
            "django_celery_broker": "redis",
            "django_celery_rabbitmq_vhost": NAME,
            "_django_celery_fleet_queues": ["celery", "slow"],
            "django_celery_visibility_timeout": defaults["django_celery_visibility_timeout"],
            "ansible_managed": "Ansible managed",
            **overrides,
        }
    )
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["to_json"] = json.dumps
    environment.filters["regex_escape"] = re.escape
    template = (ROLE / "templates" / "monitoring" / "rules.yml.j2").read_text()
    return environment.from_string(template).render(**values)


def node_unit(unit: str, instance: str = "worker1") -> str:
    return (
        f'node_systemd_unit_state{{instance="{instance}", job="node", name="{unit}", '
        'state="active", type="simple"}'
    )


def script_value(key: str) -> str:
    return f'redis_script_values{{instance="broker", job="redis", key="{NAME}/{key}"}}'


def heartbeat(instance: str) -> str:
    return (
        f'django_celery_beat_heartbeat_timestamp_seconds{{instance="{instance}", job="node", '
        f'project="{NAME}"}}'
    )


def rabbitmq_queue(figure: str, queue: str, vhost: str = NAME) -> str:
    return (
        f'rabbitmq_detailed_queue_messages_{figure}{{instance="broker", job="rabbitmq", '
        f'queue="{queue}", vhost="{vhost}"}}'
    )


def filesystem(figure: str, fstype: str, mountpoint: str) -> str:
    return (
        f'node_filesystem_{figure}_bytes{{instance="web", job="node", fstype="{fstype}", '
        f'mountpoint="{mountpoint}"}}'
    )


def flower_events(task: str, event: str) -> str:
    return (
        f'flower_events_total{{instance="worker1", job="flower", task="{task}", type="{event}", '
        'worker="default@worker1"}'
    )


def alert(name: str, at: str, *expected: dict) -> dict:
    return {"alertname": name, "eval_time": at, "exp_alerts": list(expected)}


POOL = {"instance": "worker1", "job": "node", "pool": "slow", "project": NAME}
QUEUE = {"instance": "broker", "job": "redis", "queue": "celery", "project": NAME}
FIGURE = {"instance": "broker", "job": "redis", "project": NAME}

# CeleryBeatStale when no heartbeat ever ran (or no host exports one): -1 from the start.
NEVER_RAN = alert(
    "CeleryBeatStale",
    "1m",
    {
        "exp_labels": {"project": NAME, "severity": "critical"},
        "exp_annotations": {
            "summary": "No beat heartbeat has run yet (beat stopped, or nothing consumes its queue)"
        },
    },
)

# Each case: input series (one sample every 15 s, the default interval) and what is expected
# at given times. The defaults: "for" 60 s, 100 messages, a backlog of 600 s, 0.8 of a
# visibility timeout of 3600 s (2880 s), a heartbeat every 60 s and stale after 3, 10 % free.
CASES = {
    "a pool that stops fires CeleryPoolDown after a minute, for that pool only": (
        {
            node_unit(f"{NAME}-worker@slow.service"): "1 1 0x10",
            node_unit(f"{NAME}-worker@default.service"): "1x12",
            node_unit("shop-worker@slow.service"): "0x12",
        },
        [
            alert("CeleryPoolDown", "1m"),
            alert(
                "CeleryPoolDown",
                "2m",
                {
                    "exp_labels": {**POOL, "severity": "critical"},
                    "exp_annotations": {"summary": "Worker pool slow on worker1 is not running"},
                },
            ),
        ],
    ),
    "a queue above the threshold fires CeleryQueueDeep; at the threshold it does not": (
        {
            script_value("queue/celery/depth"): "0 0 150x10",
            script_value("queue/slow/depth"): "100x12",
        },
        [
            alert("CeleryQueueDeep", "1m"),
            alert(
                "CeleryQueueDeep",
                "2m",
                {
                    "exp_labels": {**QUEUE, "severity": "warning"},
                    "exp_annotations": {"summary": "Queue celery holds 150 messages"},
                },
            ),
        ],
    ),
    "a queue never empty for 600 s fires CeleryQueueBacklog; one that empties once does not": (
        {
            script_value("queue/celery/depth"): "3x50",
            script_value("queue/slow/depth"): "3x30 0 3x19",
        },
        [
            alert("CeleryQueueBacklog", "9m"),
            alert(
                "CeleryQueueBacklog",
                "10m15s",
                {
                    "exp_labels": {**QUEUE, "severity": "warning"},
                    "exp_annotations": {"summary": "Queue celery has not been empty for 600 s"},
                },
            ),
        ],
    ),
    "more than 10 % of one task's runs failing fires CeleryTaskFailureRatio, for that task": (
        {
            flower_events("demo.tasks.add", "task-succeeded"): "0+10x20",
            flower_events("demo.tasks.add", "task-failed"): "0+5x20",
            flower_events("demo.tasks.slow", "task-succeeded"): "0+10x20",
            flower_events("demo.tasks.slow", "task-failed"): "0+1x20",
        },
        [
            alert("CeleryTaskFailureRatio", "30s"),
            alert(
                "CeleryTaskFailureRatio",
                "2m",
                {
                    "exp_labels": {
                        "task": "demo.tasks.add",
                        "project": NAME,
                        "severity": "warning",
                    },
                    "exp_annotations": {
                        "summary": "33.33% of the runs of demo.tasks.add failed in the last 300 s"
                    },
                },
            ),
        ],
    ),
    "a task unacknowledged past 0.8 of the visibility timeout fires at once": (
        {script_value("unacked/oldest_age_seconds"): "0 2000 2900 0"},
        [
            alert("CeleryTasksUnackedTooLong", "15s"),
            alert(
                "CeleryTasksUnackedTooLong",
                "30s",
                {
                    "exp_labels": {**FIGURE, "severity": "critical"},
                    "exp_annotations": {
                        "summary": "A task has been unacknowledged for 48m 20s; Redis hands it "
                        "out again at 3600 s"
                    },
                },
            ),
            alert("CeleryTasksUnackedTooLong", "45s"),
        ],
    ),
    # The heartbeat files' timestamps (node exporter's textfile collector; promtool's clock
    # starts at 0): the newest of the hosts' counts, and a host where it never ran holds 0.
    "the newest heartbeat older than three intervals fires CeleryBeatStale after a minute": (
        {heartbeat("worker1"): "10x3 70x30", heartbeat("worker2"): "0x33"},
        [
            alert("CeleryBeatStale", "5m"),
            alert(
                "CeleryBeatStale",
                "5m30s",
                {
                    "exp_labels": {"project": NAME, "severity": "critical"},
                    "exp_annotations": {
                        "summary": "No beat heartbeat ran for 4m 20s (beat stopped, or nothing "
                        "consumes its queue)"
                    },
                },
            ),
        ],
    ),
    "a fresh heartbeat on one host keeps CeleryBeatStale quiet, however old another's is": (
        {heartbeat("worker1"): "0+15x30", heartbeat("worker2"): "5x30"},
        [alert("CeleryBeatStale", "7m")],
    ),
    "no heartbeat ever (the role's file holds 0) fires CeleryBeatStale too": (
        {heartbeat("worker1"): "0x8", heartbeat("worker2"): "0x8"},
        [NEVER_RAN],
    ),
    "no host exporting a heartbeat file fires CeleryBeatStale too": (
        {node_unit(f"{NAME}-beat.service"): "1x8"},
        [NEVER_RAN],
    ),
    "beat's unit stopping fires CeleryBeatDown": (
        {node_unit(f"{NAME}-beat.service"): "1 0x8"},
        [
            alert(
                "CeleryBeatDown",
                "1m15s",
                {
                    "exp_labels": {
                        "instance": "worker1",
                        "job": "node",
                        "name": f"{NAME}-beat.service",
                        "state": "active",
                        "type": "simple",
                        "severity": "critical",
                    },
                    "exp_annotations": {"summary": "Celery beat on worker1 is not running"},
                },
            )
        ],
    ),
    "Redis not answering its exporter fires CeleryBrokerDown": (
        {'redis_up{instance="broker", job="redis"}': "1 0x8"},
        [
            alert(
                "CeleryBrokerDown",
                "1m15s",
                {
                    "exp_labels": {"instance": "broker", "job": "redis", "severity": "critical"},
                    "exp_annotations": {"summary": "Redis on broker does not answer"},
                },
            )
        ],
    ),
    "a target Prometheus cannot scrape fires MonitoringTargetDown": (
        {'up{instance="worker2", job="node"}': "1 0x8"},
        [
            alert(
                "MonitoringTargetDown",
                "1m15s",
                {
                    "exp_labels": {"instance": "worker2", "job": "node", "severity": "warning"},
                    "exp_annotations": {
                        "summary": "Prometheus cannot scrape node on worker2 "
                        "(host or exporter down)"
                    },
                },
            )
        ],
    ),
    "a filesystem with less than 10 % free fires DiskNearlyFull": (  # tmpfs is left out
        {
            filesystem("avail", "ext4", "/"): "5x8",
            filesystem("size", "ext4", "/"): "100x8",
            filesystem("avail", "tmpfs", "/run"): "1x8",
            filesystem("size", "tmpfs", "/run"): "100x8",
        },
        [
            alert(
                "DiskNearlyFull",
                "1m15s",
                {
                    "exp_labels": {
                        "instance": "web",
                        "job": "node",
                        "fstype": "ext4",
                        "mountpoint": "/",
                        "severity": "warning",
                    },
                    "exp_annotations": {"summary": "/ on web has 5% free"},
                },
            )
        ],
    ),
}


def promtool_test(rules: Path, series, tmp_path: Path, **checks) -> None:
    """Run promtool's unit test of a rules file: the input series ({series: values}, or
    promtool's own list), then the checks (alert_rule_test, promql_expr_test), one sample every
    15 s; fail with what promtool reported."""
    if isinstance(series, dict):
        series = [{"series": name, "values": values} for name, values in series.items()]
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": series, **checks}],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(render_rules())
    return path


def test_the_rendered_rules_pass_promtools_check(rules_file):
    result = subprocess.run(
        [PROMTOOL, "check", "rules", rules_file], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_alert_rule(case, rules_file, tmp_path):
    series, expectations = CASES[case]
    promtool_test(rules_file, series, alert_rule_test=expectations, tmp_path=tmp_path)


def test_the_queue_depth_recording_rule_names_the_queue_and_project(rules_file, tmp_path):
    promtool_test(
        rules_file,
        [
            {"series": script_value("queue/slow/depth"), "values": "7"},
            {"series": script_value("unacked/count"), "values": "2"},
            {"series": node_unit(f"{NAME}-worker@slow.service"), "values": "1"},
        ],
        promql_expr_test=[
            {
                "expr": "django_celery_queue_depth",
                "eval_time": "0s",
                "exp_samples": [
                    {
                        "labels": 'django_celery_queue_depth{instance="broker", '
                        f'job="redis", project="{NAME}", queue="slow"}}',
                        "value": 7,
                    }
                ],
            },
            {
                "expr": "django_celery_unacked_tasks",
                "eval_time": "0s",
                "exp_samples": [
                    {
                        "labels": 'django_celery_unacked_tasks{instance="broker", '
                        f'job="redis", project="{NAME}"}}',
                        "value": 2,
                    }
                ],
            },
            {
                "expr": "django_celery_pool_up",
                "eval_time": "0s",
                "exp_samples": [
                    {
                        "labels": 'django_celery_pool_up{instance="worker1", '
                        f'job="node", pool="slow", project="{NAME}"}}',
                        "value": 1,
                    }
                ],
            },
        ],
        tmp_path=tmp_path,
    )


# RabbitMQ: the same django_celery_* figures, from its Prometheus plugin's per-queue series.
@pytest.fixture(scope="module")
def rabbitmq_rules_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(render_rules(django_celery_broker="rabbitmq"))
    return path


def test_the_rabbitmq_rules_pass_promtools_check(rabbitmq_rules_file):
    result = subprocess.run(
        [PROMTOOL, "check", "rules", rabbitmq_rules_file], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rabbitmq_queue_depth_counts_the_apps_queues_of_its_virtual_host_only(
    rabbitmq_rules_file, tmp_path
):
    def expect(expr: str, labels: str, value: int) -> dict:
        return {
            "expr": expr,
            "eval_time": "0s",
            "exp_samples": [{"labels": f"{expr}{{{labels}}}", "value": value}],
        }

    series = {
        rabbitmq_queue("ready", "celery"): "7",
        rabbitmq_queue("ready", "slow"): "0",
        rabbitmq_queue("ready", "celery", vhost="shop"): "50",  # another project's
        rabbitmq_queue("ready", "celeryev.1234"): "9",  # not a queue of the pools
        rabbitmq_queue("unacked", "celery"): "2",
        rabbitmq_queue("unacked", "slow"): "1",
        rabbitmq_queue("unacked", "celery", vhost="shop"): "30",
    }
    where = f'instance="broker", job="rabbitmq", project="{NAME}"'
    promtool_test(
        rabbitmq_rules_file,
        series,
        promql_expr_test=[
            {
                "expr": "django_celery_queue_depth",
                "eval_time": "0s",
                "exp_samples": [
                    {
                        "labels": f'django_celery_queue_depth{{{where}, queue="celery"}}',
                        "value": 7,
                    },
                    {
                        "labels": f'django_celery_queue_depth{{{where}, queue="slow"}}',
                        "value": 0,
                    },
                ],
            },
            expect("django_celery_unacked_tasks", where, 3),
        ],
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        pytest.param(
            {rabbitmq_queue("ready", "celery"): "0 0 150x10"},
            alert(
                "CeleryQueueDeep",
                "2m",
                {
                    "exp_labels": {
                        "instance": "broker",
                        "job": "rabbitmq",
                        "queue": "celery",
                        "project": NAME,
                        "severity": "warning",
                    },
                    "exp_annotations": {"summary": "Queue celery holds 150 messages"},
                },
            ),
            id="a deep RabbitMQ queue fires CeleryQueueDeep",
        ),
        pytest.param(
            {'up{instance="broker", job="rabbitmq"}': "1 0x8"},
            alert(
                "CeleryBrokerDown",
                "1m15s",
                {
                    "exp_labels": {"instance": "broker", "job": "rabbitmq", "severity": "critical"},
                    "exp_annotations": {"summary": "RabbitMQ on broker does not answer"},
                },
            ),
            id="RabbitMQ's plugin not answering fires CeleryBrokerDown",
        ),
    ],
)
def test_rabbitmq_alert_rule(series, expected, rabbitmq_rules_file, tmp_path):
    promtool_test(rabbitmq_rules_file, series, alert_rule_test=[expected], tmp_path=tmp_path)


def test_rabbitmq_rules_have_no_unacked_age_alert_since_rabbitmq_keeps_no_delivery_time(
    rabbitmq_rules_file,
):
    names = [
        rule.get("alert") or rule.get("record")
        for group in yaml.safe_load(rabbitmq_rules_file.read_text())["groups"]
        for rule in group["rules"]
    ]
    assert "CeleryTasksUnackedTooLong" not in names
    assert "django_celery_unacked_oldest_age_seconds" not in names
    assert {"CeleryQueueDeep", "CeleryBeatStale", "CeleryBrokerDown"} <= set(names)
