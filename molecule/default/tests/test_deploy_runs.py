"""Playbook runs against the converged host, each proving several promises at once:

1. a new release at -vvv with --diff: deployed and run (on the same virtualenv, so gunicorn
   reloads), only django_celery_keep_releases releases remain, and no secret appears anywhere
   in the output;
2. --tags django_celery_activate with a pool that cannot start: only the activate phase runs,
   only that pool restarts, and the play fails with its journal; meanwhile, alongside, check
   mode previews a release not on the host without deploying it.

test_deploy_runs_under_requests.py, which pytest runs next, goes on from there: a release with
new dependencies (which also restores the scenario's own pools), then the first release's name
again, a rollback, both under a request loop. Together they run before the destructive modules
(broker restart, reboot) and end on the scenario's own configuration.
"""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import (
    NAME,
    POOLS,
    SCENARIO,
    ansible_playbook,
    controller_secrets_dir,
    main_pid,
    playbook_failure,
    run_ok,
    unit_of,
)

RELEASES = f"/srv/{NAME}/releases"
CURRENT = f"/srv/{NAME}/current"
SERVICES = [unit_of(p) for p in POOLS] + [f"{NAME}-beat.service", f"{NAME}-web.service"]
SILENT = next(p for p in POOLS if "slow" in p["queues"])
FIRST = str(SCENARIO.get("django_celery_release", "1"))


def _pids(host) -> dict:
    return {unit: main_pid(host, unit) for unit in SERVICES}


def _cwds(host) -> dict:
    return {
        unit: run_ok(host, "readlink", f"/proc/{pid}/cwd").strip()
        for unit, pid in _pids(host).items()
    }


def _recaps(result) -> list[tuple[int, int]]:
    return [(int(c), int(f)) for c, f in re.findall(r"changed=(\d+).*failed=(\d+)", result.stdout)]


def _timed_run(*args: str):
    started = time.monotonic()
    result = ansible_playbook(*args)
    result.took = time.monotonic() - started
    return result


def _releases(host) -> list[str]:
    return sorted(run_ok(host, "ls", RELEASES).split())


def test_generated_secrets_are_kept_private_on_the_controller():
    directory = controller_secrets_dir()
    files = sorted(directory.iterdir())
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files}
    assert files and set(modes.values()) == {"0o600"}, modes
    assert directory.stat().st_mode & 0o077 == 0, oct(directory.stat().st_mode)


@pytest.fixture(scope="module")
def second_release(host):
    """Release "2" at -vvv --diff, keeping 2 releases; an older release "0" is planted first."""
    run_ok(host, "mkdir", "-p", f"{RELEASES}/0")
    run_ok(host, "touch", "-d", "2000-01-01", f"{RELEASES}/0")
    extra = {"django_celery_release": "2", "django_celery_keep_releases": 2}
    before = _pids(host)
    result = _timed_run("-vvv", "--diff", "-e", json.dumps(extra))
    result.pids_before = before
    print(f"new release run at -vvv --diff: {result.took:.0f} s")
    return result


def test_a_new_release_is_deployed_and_its_services_run_it(host, second_release):
    assert second_release.returncode == 0, playbook_failure(second_release)
    assert host.file(CURRENT).linked_to == f"{RELEASES}/2"
    assert set(_cwds(host).values()) == {f"{RELEASES}/2/src"}


def test_a_release_on_the_same_virtualenv_reloads_gunicorn(host, second_release):
    """Same requirements, so the same virtualenv: a HUP loads the new code, no restart (the
    master's working directory above moved with it)."""
    web = f"{NAME}-web.service"
    assert _pids(host)[web] == second_release.pids_before[web]


def test_only_the_kept_number_of_releases_remain(host, second_release):
    assert _releases(host) == sorted({FIRST, "2"})


def test_releases_built_from_the_same_requirements_share_one_virtualenv(host, second_release):
    """Release "2" changes no requirement: its venv is a link to the first release's."""
    assert second_release.returncode == 0, playbook_failure(second_release)
    targets = {
        release: host.check_output(f"readlink -f {RELEASES}/{release}/venv")
        for release in (FIRST, "2")
    }
    assert targets[FIRST] == targets["2"], targets
    assert targets["2"].startswith(f"/srv/{NAME}/venvs/"), targets


def test_a_release_that_changes_only_code_runs_no_pip(second_release):
    """The pip task of release "2" was skipped: its virtualenv already had the requirements."""
    task = "TASK [django_celery : Install the project's requirements into the virtualenv]"
    parts = second_release.stdout.split(task, 1)
    assert len(parts) == 2, "the run never reached the virtualenv tasks"
    results = parts[1].split("\nTASK [", 1)[0]
    assert re.search(r"^skipping: ", results, re.M) and not re.search(
        r"^(ok|changed): ", results, re.M
    ), results[:2000]


def _secrets() -> dict:
    """Every secret the role keeps on the controller for this scenario, by file name."""
    return {path.name: path.read_text().split()[0] for path in controller_secrets_dir().iterdir()}


def test_a_run_at_vvv_with_diff_prints_no_secret(second_release):
    output = second_release.stdout + second_release.stderr
    secrets = _secrets()
    assert len(output) > 100_000 and secrets, "expected a verbose run and secrets to look for"
    assert [name for name, secret in secrets.items() if secret in output] == []


@pytest.fixture(scope="module")
def silent_pool(host, second_release):
    """Only the activate phase, with the slow pool given an option celery refuses (it exits at
    start, so it never answers ping) and an extra environment variable (which only the release
    phase would write). While the role waits for that pool, a check-mode run previews a release
    not on the host (check mode changes nothing, so it may run alongside)."""
    pools = [dict(p, extra_args=["--no-such-option"]) if p == SILENT else p for p in POOLS]
    extra_env = dict(SCENARIO.get("django_celery_extra_env", {}), TAGS_PROBE="1")
    extra = {
        "django_celery_release": "2",
        "django_celery_worker_pools": pools,
        "django_celery_extra_env": extra_env,
        # Two pings, not twelve: the pool never answers, so waiting longer proves nothing.
        "django_celery_ping_retries": 2,
    }
    before = {"pids": _pids(host), "current": host.file(CURRENT).linked_to}
    preview = ("--check", "--diff", "-e", "django_celery_release=preview")
    with ThreadPoolExecutor(max_workers=2) as runs:
        silent = runs.submit(
            _timed_run, "--tags", "django_celery_activate", "-e", json.dumps(extra)
        )
        check = runs.submit(_timed_run, *preview)
        result, check_result = silent.result(), check.result()
    print(
        f"silent pool run: {result.took:.0f} s; check mode run alongside: {check_result.took:.0f} s"
    )
    return {"result": result, "check": check_result, "before": before, "after": _pids(host)}


def test_a_pool_that_does_not_answer_ping_fails_the_play_with_its_journal(silent_pool):
    result = silent_pool["result"]
    output = result.stdout + result.stderr
    assert result.returncode != 0, playbook_failure(result)
    assert "did not answer ping" in output, playbook_failure(result)
    journal = re.findall(rf"{NAME}-worker-{SILENT['name']}\[\d+\]: .*No such option", output)
    assert journal, playbook_failure(result)


def test_a_pool_whose_options_changed_restarts_alone(silent_pool):
    before, after = silent_pool["before"]["pids"], silent_pool["after"]
    restarted = sorted(unit for unit in SERVICES if before[unit] != after[unit])
    assert restarted == [unit_of(SILENT)]


def test_check_mode_previews_a_new_release_without_deploying_it(host, silent_pool):
    check = silent_pool["check"]
    assert check.returncode == 0, playbook_failure(check)
    recaps = _recaps(check)
    assert recaps and all(changed > 0 and failed == 0 for changed, failed in recaps), recaps
    assert not host.file(f"{RELEASES}/preview").exists
    assert host.file(CURRENT).linked_to == silent_pool["before"]["current"]
    others = [unit for unit in SERVICES if unit != unit_of(SILENT)]
    assert [silent_pool["before"]["pids"][u] for u in others] == [
        silent_pool["after"][u] for u in others
    ]


def test_a_check_mode_run_with_diff_prints_no_secret(silent_pool):
    check = silent_pool["check"]
    output = check.stdout + check.stderr
    secrets = _secrets()
    assert "changed:" in output and secrets, "expected a check run that previews changes"
    assert [name for name, secret in secrets.items() if secret in output] == []


def test_a_tagged_run_runs_only_its_phase(host, silent_pool):
    """The activate phase wrote the pool's options; the release phase, which writes the
    environment file, did not run."""
    options = host.file(f"/etc/{NAME}/workers/{SILENT['name']}.env").content_string
    assert "--no-such-option" in options
    assert "TAGS_PROBE" not in host.file(f"/etc/{NAME}/{NAME}.env").content_string
