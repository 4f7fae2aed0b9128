"""A new release goes live through nginx while requests keep coming: new code, a new version of a
dependency (a new virtualenv, so gunicorn restarts; systemd holds its socket meanwhile and the
connections wait in the backlog) and a new setting. No request fails, and afterwards only the
new release answers. Then a package added to a file the requirements include (-r) reaches the
virtualenv on a redeploy of the same release (wheelhouse mode), and the scenario's own release
goes back live, under the same request loop: a rollback, every service on the first release.

Runs right after test_deploy_runs.py, which leaves release 2 on the host with its slow pool
broken: the first run here, with the scenario's own pools, mends it.

The request loop runs on the host, through nginx over HTTPS as a browser would (a new TLS
connection per request), and counts answers by the release that gave them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import (
    NAME,
    POOLS,
    SCENARIO,
    ansible_playbook,
    front_door,
    main_pid,
    playbook_failure,
    run_ok,
    site_certificate,
    unit_of,
    wait_for,
)

FIRST = str(SCENARIO.get("django_celery_release", "1"))
RELEASES = f"/srv/{NAME}/releases"
SERVICES = [unit_of(p) for p in POOLS] + [f"{NAME}-beat.service", f"{NAME}-web.service"]
NEW = "frontdoor"
APP = Path(__file__).resolve().parents[3] / "app"
NOTE = "release frontdoor: new settings"

# Until the stop file appears (or 300 s): GET /release/ through nginx, count every answer by
# release, and HTTP errors and connection errors apart (the first of each kind kept).
REQUEST_LOOP = r"""
import http.client, json, os, socket, ssl, sys, time
site, cafile, label = sys.argv[1], sys.argv[2], sys.argv[3]
stop, out = f"/var/tmp/{label}.stop", f"/var/tmp/{label}.json"
context = ssl.create_default_context(cafile=cafile)
counts = {"requests": 0, "ok": 0, "http_errors": 0, "connection_errors": 0}
counts.update(by_release={}, last=[])
deadline = time.monotonic() + 300
while not os.path.exists(stop) and time.monotonic() < deadline:
    counts["requests"] += 1
    try:
        raw = socket.create_connection(("127.0.0.1", 443), timeout=30)
        connection = http.client.HTTPConnection(site, 443, timeout=30)
        connection.sock = context.wrap_socket(raw, server_hostname=site)
        connection.request("GET", "/release/?package=six", headers={"Host": site})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        if answer.status != 200:
            counts["http_errors"] += 1
            counts.setdefault("first_http_error", f"{answer.status} {body[:200]!r}")
            continue
        seen = json.loads(body)
        counts["ok"] += 1
        key = f'{seen["release"]} six={seen["package"]["six"]} note={seen["note"]!r}'
        counts["by_release"][key] = counts["by_release"].get(key, 0) + 1
        counts["last"] = (counts["last"] + [key])[-20:]
        # A steady client, not a load test: ~8 requests a second, a new TLS connection each, leave
        # the deploy (and the scenarios beside it on a 2-core CI machine) the CPU they need.
        time.sleep(0.1)
    except OSError as error:
        counts["connection_errors"] += 1
        counts.setdefault("first_connection_error", repr(error))
json.dump(counts, open(out, "w"))
"""


def site_name(host) -> str:
    conf = host.file(f"/etc/nginx/conf.d/django_celery-{NAME}.conf").content_string
    return next(line.split()[1].rstrip(";") for line in conf.splitlines() if "server_name" in line)


def under_requests(host, label: str, *playbook_args: str) -> dict:
    """Run the converge playbook while the request loop runs; its counts and the run."""
    run_ok(host, "rm", "-f", f"/var/tmp/{label}.stop", f"/var/tmp/{label}.json")
    # A transient unit: it outlives the command that starts it, and its journal keeps a crash.
    run_ok(host, "systemd-run", f"--unit=request-loop-{label}", "--collect", "python3", "-c",
           REQUEST_LOOP, site_name(host), site_certificate(), label)  # fmt: skip
    time.sleep(3)
    started = time.monotonic()
    result = ansible_playbook(*playbook_args)
    took = time.monotonic() - started
    time.sleep(3)
    run_ok(host, "touch", f"/var/tmp/{label}.stop")
    assert wait_for(lambda: host.file(f"/var/tmp/{label}.json").exists, 60), run_ok(
        host, "journalctl", "--no-pager", "-n", "30", "-u", f"request-loop-{label}"
    )
    counts = json.loads(host.file(f"/var/tmp/{label}.json").content_string)
    shown = {k: v for k, v in counts.items() if k != "last"}
    print(f"request loop through nginx during {label} ({took:.0f} s run): {shown}")
    return {"result": result, "counts": counts}


def release_vars(source: Path, release: str, note: str) -> str:
    return json.dumps(
        {
            "django_celery_source_path": str(source),
            "django_celery_release": release,
            "django_celery_extra_env": {
                **SCENARIO["django_celery_extra_env"],
                "DEMO_RELEASE_NOTE": note,
            },
        }
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the sample app with new code, six 1.16.0 instead of 1.17.0, and its
    requirements moved to a file the top one includes."""
    source = tmp_path_factory.mktemp("frontdoor") / "app"
    shutil.copytree(APP, source, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    (source / "demo" / "views.py").write_text(
        (source / "demo" / "views.py").read_text() + "\n# New code of release frontdoor.\n"
    )
    (source / "requirements").mkdir()
    pins = (source / "requirements.txt").read_text().replace("six==1.17.0", "six==1.16.0")
    assert "six==1.16.0" in pins
    (source / "requirements" / "base.txt").write_text(pins)
    (source / "requirements.txt").write_text("-r requirements/base.txt\n")
    return source


@pytest.fixture(scope="module")
def redeployed(host, project) -> dict:
    run = under_requests(host, "redeploy", "-e", release_vars(project, NEW, NOTE))
    assert run["result"].returncode == 0, playbook_failure(run["result"])
    return run


def test_no_request_fails_while_a_release_with_new_dependencies_goes_live(redeployed):
    counts = redeployed["counts"]
    assert counts["requests"] > 20, counts
    assert (counts["http_errors"], counts["connection_errors"]) == (0, 0), counts


def test_the_old_release_answered_until_the_switch_and_the_new_one_after(redeployed):
    by_release = redeployed["counts"]["by_release"]
    new = f"{NEW} six=1.16.0 note={NOTE!r}"
    assert by_release.get(new, 0) > 0 and len(by_release) >= 2, by_release
    # The loop's last 20 answers, after the run had ended: the new release's only.
    assert set(redeployed["counts"]["last"]) == {new}, redeployed["counts"]["last"]


def test_after_the_deploy_only_the_new_release_answers_with_its_dependency_and_setting(
    host, redeployed
):
    answers = [front_door(host, site_name(host), "/release/?package=six") for _ in range(10)]
    seen = {(a["status"], a["body"]) for a in answers}
    assert len(seen) == 1, seen
    body = json.loads(seen.pop()[1])
    assert (body["release"], body["package"]["six"], body["note"]) == (NEW, "1.16.0", NOTE)


@pytest.fixture(scope="module")
def included_file_grew(host, project, redeployed) -> dict:
    """The same release again, with a package added only to the included file."""
    base = project / "requirements" / "base.txt"
    base.write_text(base.read_text() + "iniconfig==2.1.0\n")
    result = ansible_playbook("-e", release_vars(project, NEW, NOTE))
    return {"result": result}


def test_a_package_added_to_an_included_requirements_file_is_installed(host, included_file_grew):
    assert included_file_grew["result"].returncode == 0, playbook_failure(
        included_file_grew["result"]
    )
    answer = front_door(host, site_name(host), "/release/?package=iniconfig")
    assert json.loads(answer["body"])["package"] == {"iniconfig": "2.1.0"}


@pytest.fixture(scope="module")
def back_to_first(host, included_file_grew) -> dict:
    """The scenario's own release and variables again, under the request loop."""
    before = {unit: main_pid(host, unit) for unit in SERVICES}
    return {**under_requests(host, "back-to-first"), "pids_before": before}


def test_no_request_fails_while_the_first_release_comes_back(back_to_first):
    assert back_to_first["result"].returncode == 0, playbook_failure(back_to_first["result"])
    counts = back_to_first["counts"]
    assert counts["requests"] > 20, counts
    assert (counts["http_errors"], counts["connection_errors"]) == (0, 0), counts


def test_after_going_back_only_the_first_release_answers(host, back_to_first):
    body = json.loads(front_door(host, site_name(host), "/release/?package=six")["body"])
    assert (body["release"], body["package"]["six"], body["note"]) == (FIRST, "1.17.0", "")


def test_setting_the_previous_release_again_rolls_back(host, back_to_first):
    """current and every service's working directory are the first release's again, and every
    service restarted onto it (a new virtualenv: gunicorn too)."""
    assert back_to_first["result"].returncode == 0, playbook_failure(back_to_first["result"])
    assert host.file(f"/srv/{NAME}/current").linked_to == f"{RELEASES}/{FIRST}"
    after = {unit: main_pid(host, unit) for unit in SERVICES}
    assert all(after[unit] != back_to_first["pids_before"][unit] for unit in SERVICES), after
    cwds = {run_ok(host, "readlink", f"/proc/{pid}/cwd").strip() for pid in after.values()}
    assert cwds == {f"{RELEASES}/{FIRST}/src"}, cwds
