"""site.yml as operators run it on a running fleet: a bad value stops every host before any
change; a rolling redeploy with tasks in flight loses none, restarts every service into the
new release after its migrations, and leaves the hosts' other firewall rules alone; a failed
rollout stops and names the host. (A configuration change without a new release:
test_password_rotation.py, whose rollout is one.)

The failed rollout runs last: it leaves the web host on a broken bind (the next site.yml run
with good values repairs it).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest
from conftest import playbook_failure
from fleet import (
    APP_HOSTS,
    BROKER,
    EPHEMERAL,
    INVENTORY,
    NAME,
    PROJECT,
    STREAM,
    WEB,
    WORKER_HOSTS,
    app_units,
    current_release,
    inventory_with_host_vars,
    node,
    recap,
    run_id,
    services_snapshot,
    shell,
    site_yml,
    slow_task_report,
    wait_until,
)

testinfra_hosts = [f"ansible://{WEB}"]

ENV_FILE = f"/etc/{NAME}/{NAME}.env"


@pytest.fixture(autouse=True)
def _inventory_is_set():
    assert INVENTORY, "run through molecule verify (MOLECULE_INVENTORY_FILE is not set)"


def output_of(result) -> str:
    """What ansible-playbook printed: failures go to stderr (display_failed_stderr)."""
    return result.stdout + result.stderr


def headers_after(output: str, task: str) -> list[str]:
    """The task, handler and play headers printed after a task's own header and its results."""
    after = output.split(f"TASK [{task}]", 1)[-1].split("PLAY RECAP", 1)[0]
    return re.findall(r"^(?:TASK|RUNNING HANDLER|PLAY) \[.*$", after, re.M)


# --- Validation before any change ------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_value_on_one_host():
    """site.yml with one host's soft time limit above the hard limit (host_vars of worker2)."""
    hosts = APP_HOSTS + [BROKER]
    stamp = f"stat -c %Y {ENV_FILE} 2>/dev/null || echo none"
    before = {name: node(name).check_output(stamp) for name in hosts}
    inventory = inventory_with_host_vars(
        "bad-value", {"dc-cluster-worker2": {"django_celery_task_soft_time_limit": 70}}
    )
    result = site_yml(inventory=inventory)
    after = {name: node(name).check_output(stamp) for name in hosts}
    return {"result": result, "before": before, "after": after}


def test_a_bad_value_on_one_host_fails_naming_the_variable(bad_value_on_one_host):
    result = bad_value_on_one_host["result"]
    output = output_of(result)
    assert result.returncode != 0
    assert re.findall(r"^fatal: \[([^\]]+)\]", output, re.M) == ["dc-cluster-worker2"], output
    assert "django_celery_task_soft_time_limit (70) must be lower" in output


def test_a_bad_value_on_one_host_changes_no_host(bad_value_on_one_host):
    counts = recap(bad_value_on_one_host["result"].stdout)
    assert sorted(counts) == sorted(APP_HOSTS + [BROKER]), counts
    assert {name: c["changed"] for name, c in counts.items()} == dict.fromkeys(counts, 0)
    assert bad_value_on_one_host["after"] == bad_value_on_one_host["before"]


def test_a_bad_value_on_one_host_stops_every_host_at_validation(bad_value_on_one_host):
    """No host runs a single task after the failed check: not the next check, not the
    packages, not the release play."""
    output = output_of(bad_value_on_one_host["result"])
    assert "TASK [django_celery : Check the time limits]" in output
    assert headers_after(output, "django_celery : Check the time limits") == []


# --- A rolling redeploy with tasks in flight -------------------------------------------------

# fleet.STREAM sends the tasks; the test writes its stop file after ansible-playbook returned.

MIGRATION = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("demo", "{previous}")]

    operations = [
        migrations.RunSQL(
            "CREATE TABLE {table} (id integer PRIMARY KEY)", reverse_sql="DROP TABLE {table}"
        )
    ]
"""

# A table of the operator's own on the broker host, next to the role's.
FOREIGN_TABLE = (
    "nft add table inet operator_rules; "
    "nft add chain inet operator_rules input "
    "'{ type filter hook input priority 10; policy accept; }'; "
    "nft add rule inet operator_rules input tcp dport 9 counter accept"
)


def release_with_a_migration(run: str) -> tuple[Path, str]:
    """A copy of app/ whose demo app has one more migration (it creates a table)."""
    source = EPHEMERAL / f"release-r{run}"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(
        PROJECT / "app",
        source,
        ignore=shutil.ignore_patterns("db.sqlite3", "__pycache__", "*.pyc", ".*cache"),
    )
    migrations = source / "demo" / "migrations"
    previous = max(path.stem for path in migrations.glob("[0-9][0-9][0-9][0-9]_*.py"))
    name = f"{int(previous[:4]) + 1:04d}_rollout_{run}"
    (migrations / f"{name}.py").write_text(
        MIGRATION.format(previous=previous, table=f"demo_rollout_{run}")
    )
    return source, name


def private_controller_cache() -> str:
    """A wheelhouse path whose parent (where the role packs the source) is this scenario's own,
    so a concurrent run of another scenario cannot swap the packed source; the wheels are the
    scenario's (a link to its wheelhouse, molecule.yml)."""
    cache = EPHEMERAL / "controller-cache"
    cache.mkdir(exist_ok=True)
    wheelhouse = cache / "wheelhouse"
    if not wheelhouse.is_symlink():
        wheelhouse.symlink_to(Path.home() / ".cache" / "django_celery" / "wheelhouse-cluster")
    return str(wheelhouse)


@pytest.fixture(scope="module")
def redeploy():
    """One site.yml run with a new release (and a new migration) while the web host streams
    slow tasks; the broker host carries a firewall table of the operator's own, and its fleet
    rules were edited by hand, so the run reloads the role's firewall."""
    run = run_id()
    host = node(WEB)
    broker = node(BROKER)
    broker.run("nft delete table inet operator_rules")
    broker.check_output(FOREIGN_TABLE)
    foreign_before = broker.run("nft -s list table inet operator_rules").stdout
    broker.check_output("echo '# edited by hand' >> /etc/nftables-django_celery.nft")

    source, migration = release_with_a_migration(run)
    before = services_snapshot()
    host.run(f"rm -f /var/lib/{NAME}/stop-stream-{run}")
    stream = STREAM.format(run=run, prefix=f"rolling-{run}")
    start = host.run(
        f"systemd-run --unit=slow-stream-{run} --collect "
        f"{NAME}-manage shell -c {shlex.quote(stream)}"
    )
    assert start.rc == 0, start.stderr
    time.sleep(5)
    began, began_wall = time.monotonic(), time.time()
    extra = {
        "django_celery_release": f"r{run}",
        "django_celery_source_path": str(source),
        "django_celery_wheelhouse_dir": private_controller_cache(),
    }
    deploy = site_yml("-e", json.dumps(extra))
    ended_wall, seconds = time.time(), time.monotonic() - began
    time.sleep(2)
    host.run(f"install -o {NAME} -m 0644 /dev/null /var/lib/{NAME}/stop-stream-{run}")
    after = services_snapshot()
    foreign_after = broker.run("nft -s list table inet operator_rules").stdout
    fleet_table = broker.run("nft list table inet django_celery").stdout
    broker.run("nft delete table inet operator_rules")

    stream_file = f"/var/lib/{NAME}/stream-{run}.json"
    assert wait_until(lambda: host.file(stream_file).exists, 60), "the stream never finished"
    stream = json.loads(host.file(stream_file).content_string)
    Path(EPHEMERAL, "rolling-report.txt").write_text(
        "\n".join(re.findall(r"PLAY RECAP.*", deploy.stdout, re.S))
    )
    return {
        "run": run,
        "deploy": deploy,
        "seconds": seconds,
        "began": began_wall,
        "ended": ended_wall,
        "stream": stream,
        "before": before,
        "after": after,
        "migration": migration,
        "foreign": (foreign_before, foreign_after),
        "fleet_table": fleet_table,
    }


def test_rolling_redeploy_succeeds(redeploy):
    deploy = redeploy["deploy"]
    assert deploy.returncode == 0, playbook_failure(deploy)
    assert {name: current_release(name) for name in APP_HOSTS} == dict.fromkeys(
        APP_HOSTS, f"r{redeploy['run']}"
    )


def test_the_task_stream_kept_flowing_until_the_rollout_ended(redeploy):
    stream = redeploy["stream"]
    lag = stream["last_sent"] - redeploy["ended"]
    print(f"stream: {len(stream['ids'])} tasks sent; last one {lag:.1f} s after the deploy ended")
    assert stream["stopped"], "the stream ended on its safety deadline, not on the stop file"
    assert stream["last_sent"] > redeploy["ended"]


def test_rolling_redeploy_with_tasks_in_flight_loses_none(redeploy):
    host = node(WEB)
    submitted = redeploy["stream"]["ids"]
    prefix = f"rolling-{redeploy['run']}-"
    slow_task_report(host, prefix, f"completed={len(submitted)}", 300)
    final = slow_task_report(host, prefix)
    print(
        f"rolling redeploy: {redeploy['seconds']:.0f} s; submitted {len(submitted)}, completed "
        f"{final['completed']}, started twice {final['started_twice']}, "
        f"completed twice {final['duplicated']}"
    )
    assert sorted(final["ids"]) == sorted(submitted)
    assert (final["started_twice"], final["duplicated"]) == (0, 0)


def test_rolling_redeploy_restarts_every_service_into_the_new_release(redeploy):
    """Each service of each app host has a new main process whose working directory is the
    new release's code: none kept running the old code."""
    src = f"/srv/{NAME}/releases/r{redeploy['run']}/src"
    before, after = redeploy["before"], redeploy["after"]
    stale = {
        f"{unit}@{name}": (before[name][unit]["pid"], state["pid"], state["cwd"])
        for name in APP_HOSTS
        for unit, state in after[name].items()
        if state["pid"] in (0, before[name][unit]["pid"]) or state["cwd"] != src
    }
    assert {name: sorted(after[name]) for name in APP_HOSTS} == {
        name: sorted(app_units(name)) for name in APP_HOSTS
    }
    assert stale == {}


def test_migrations_are_applied_before_any_host_switches_to_the_release(redeploy):
    """The new release's migration was applied in this run, before any service of any host
    (re)started on the new release."""
    code = (
        "from django.db.migrations.recorder import MigrationRecorder as R; "
        f"print(R.Migration.objects.get(app='demo', name='{redeploy['migration']}')"
        ".applied.timestamp())"
    )
    applied = float(shell(node(WEB), code))
    starts = {
        f"{unit}@{name}": state["started"]
        for name, units in redeploy["after"].items()
        for unit, state in units.items()
    }
    first = min(starts, key=starts.get)
    print(f"migration applied {starts[first] - applied:.1f} s before the first restart ({first})")
    assert redeploy["began"] < applied < starts[first], (applied, starts)


def test_site_yml_leaves_the_hosts_other_firewall_rules_alone(redeploy):
    """The run reloaded the role's own table (its rules file had changed) and the operator's
    table next to it is still there, rule for rule."""
    before, after = redeploy["foreign"]
    handler = "RUNNING HANDLER [django_celery : Reload the fleet firewall]"
    assert handler in redeploy["deploy"].stdout
    assert f"ip saddr @fleet_{NAME} accept" in redeploy["fleet_table"]
    assert after == before


# --- A failed rollout (last: it leaves the web host broken) ----------------------------------


def another_release() -> str:
    """A release of the web host other than its current one (the most recent): rolling back
    to it needs no new virtualenv. A new name when there is none."""
    web = node(WEB)
    current = current_release(WEB)
    listed = web.check_output(f"ls -t /srv/{NAME}/releases").split()
    return next((release for release in listed if release != current), f"f{run_id()}")


@pytest.fixture(scope="module")
def failed_rollout():
    """A rollout (back to the previous release) whose web host cannot serve: its host_vars
    bind gunicorn to IPv6 loopback, which these hosts do not have. The web host is the first
    app host of the rollout; worker2 comes after it, worker1 (beat) last."""
    release = another_release()
    releases = {name: current_release(name) for name in APP_HOSTS}
    before = services_snapshot()
    inventory = inventory_with_host_vars(
        "failed-rollout", {WEB: {"django_celery_web_bind": "[::1]:8000"}}
    )
    result = site_yml("-e", f"django_celery_release={release}", inventory=inventory)
    return {
        "release": release,
        "result": result,
        "releases": (releases, {name: current_release(name) for name in APP_HOSTS}),
        "services": (before, services_snapshot()),
    }


def test_a_failed_rollout_stops_and_names_the_failing_host(failed_rollout):
    result = failed_rollout["result"]
    output = output_of(result)
    assert result.returncode != 0
    failing = re.findall(r"^fatal: \[([^\]]+)\]", output, re.M)
    assert failing == [WEB], output[-3000:]
    assert recap(result.stdout)[WEB]["failed"] == 1


def test_hosts_after_the_failed_host_keep_running_the_old_release(failed_rollout):
    (releases_before, releases_after) = failed_rollout["releases"]
    (before, after) = failed_rollout["services"]
    later = sorted(WORKER_HOSTS)
    assert releases_after[WEB] == failed_rollout["release"], "the rollout never reached web"
    assert releases_before[WEB] != failed_rollout["release"]
    assert {name: releases_after[name] for name in later} == {
        name: releases_before[name] for name in later
    }
    assert {name: after[name] for name in later} == {name: before[name] for name in later}
