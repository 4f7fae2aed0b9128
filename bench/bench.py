"""Benchmarks of the role, side by side with their baselines in one run; writes docs/BENCHMARKS.md.

Run through bench/run (which installs what is missing first). Every comparison runs its
baseline in the same run, on the same machine and base image, alternating the two, and reports
the median of --runs runs and the ratio. Benchmarks are not tests: nothing here asserts a time.

  single host (the lab's inventory, a Debian 12 systemd container each):
    fresh converge of site.yml, this tree vs the baseline tree vs a plain shell script
    (bench/shell_floor.sh) installing Redis, a virtualenv, Django, Celery, django-celery-beat
    and gunicorn from the same wheelhouse; idempotent re-run; --check --diff on a converged host
  throughput: N no-op tasks through the deployed pool vs the same worker started by hand
  fleet (--fleet): the Molecule "cluster" scenario, this tree vs the baseline: re-run and
    rolling redeploy (a new release, code unchanged)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "django-celery-systemd:bookworm"
# Every capability but SYS_RESOURCE, as scripts/lab and the Molecule scenarios give them.
CAPS = (
    "AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND CHOWN DAC_OVERRIDE DAC_READ_SEARCH "
    "FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE MKNOD "
    "NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW SETFCAP SETGID SETPCAP SETUID SYSLOG "
    "SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_TIME "
    "SYS_TTY_CONFIG WAKE_ALARM"
).split()
ENV = dict(os.environ, PY_COLORS="0", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", NO_COLOR="1")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None, check=True) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env or ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if check and done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout[-4000:]}")
    return done.stdout


def timed(argv: list[str], **kwargs) -> tuple[float, str]:
    start = time.monotonic()
    out = run(argv, **kwargs)
    return time.monotonic() - start, out


# --- hosts ----------------------------------------------------------------------------------


def host_up(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    caps = [arg for cap in CAPS for arg in ("--cap-add", cap)]
    run(
        ["docker", "run", "-d", "--name", name, "--hostname", "lab", "--cgroupns", "host",
         "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
         "--tmpfs", "/tmp", "--security-opt", "seccomp=unconfined",
         "--security-opt", "apparmor=unconfined", "--cap-drop", "ALL", *caps,
         IMAGE, "/lib/systemd/systemd"]
    )  # fmt: skip
    for _ in range(60):
        state = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    sys.exit(f"{name} did not boot")


def host_down(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


class Tree:
    """A checkout of the project (this one, or the baseline's worktree) and its lab inventory
    pointed at a container of its own."""

    def __init__(self, label: str, path: Path, container: str, workdir: Path):
        self.label, self.path, self.container = label, path, container
        self.inventory = workdir / f"inventory-{label}"
        shutil.rmtree(self.inventory, ignore_errors=True)
        shutil.copytree(path / "inventory/lab", self.inventory)
        hosts = self.inventory / "hosts.yml"
        hosts.write_text(hosts.read_text().replace("django-celery-lab", container))
        self.env = dict(ENV, ANSIBLE_CONFIG=str(path / "ansible.cfg"))

    def playbook(self, *extra: str) -> tuple[float, str]:
        return timed(
            ["ansible-playbook", "-i", str(self.inventory), "site.yml", *extra],
            cwd=self.path, env=self.env,
        )  # fmt: skip


def recap(output: str) -> str:
    found = re.findall(r"^\S+\s+: (ok=\d+\s+changed=\d+.*)$", output, re.MULTILINE)
    return re.sub(r"\s+", " ", found[-1]).strip() if found else "?"


def slowest_tasks(output: str, count: int = 10) -> list[tuple[str, float]]:
    """The profile_tasks recap at the end of a run: its slowest tasks."""
    tail = output.split("TASKS RECAP", 1)[-1]
    rows = re.findall(r"^(.+?) -+ ([\d.]+)s$", tail, re.MULTILINE)
    return [(name.strip(), float(sec)) for name, sec in rows[:count]]


# --- single host ----------------------------------------------------------------------------


def shell_floor(container: str) -> float:
    """bench/shell_floor.sh on a fresh container, with the controller's wheelhouse."""
    wheelhouse = Path.home() / ".cache/django_celery/wheelhouse/cp311-x86_64.tar.gz"
    start = time.monotonic()
    run(["docker", "cp", str(wheelhouse), f"{container}:/root/wheelhouse.tar.gz"])
    run(["docker", "cp", str(ROOT / "app/requirements.txt"), f"{container}:/root/requirements.txt"])
    run(["docker", "cp", str(ROOT / "bench/shell_floor.sh"), f"{container}:/root/shell_floor.sh"])
    run(["docker", "exec", container, "bash", "/root/shell_floor.sh"])
    return time.monotonic() - start


def cold_wheelhouse(workdir: Path) -> float:
    """What the controller's first converge adds once: the role's pip download of the sample
    app's requirements for Debian 12's Python, into an empty directory."""
    dest = workdir / "wheelhouse-cold"
    seconds, _ = timed(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
         "--only-binary=:all:", "--implementation=cp", "--python-version=3.11", "--abi=cp311",
         "--platform=manylinux2014_x86_64", "--platform=manylinux_2_17_x86_64",
         "--platform=manylinux_2_28_x86_64", f"--dest={dest}",
         f"--requirement={ROOT / 'app/requirements.txt'}"]
    )  # fmt: skip
    shutil.rmtree(dest, ignore_errors=True)
    return seconds


def single_host(head: Tree, base: Tree, runs: int, results: dict) -> None:
    fresh = {"head": [], "base": [], "floor": []}
    slow = {}
    # The timed converges find the controller's wheelhouse filled (a warm-up converge of this
    # tree fills it if it is not); its one-time download is measured apart, cold.
    results["cold_wheelhouse"] = cold_wheelhouse(head.inventory.parent)
    log(f"controller wheelhouse download, cold: {results['cold_wheelhouse']:.1f} s")
    if not (Path.home() / ".cache/django_celery/wheelhouse/cp311-x86_64.tar.gz").exists():
        host_up(head.container)
        head.playbook()
    for i in range(runs):
        for tree in (head, base):
            host_up(tree.container)
            seconds, out = tree.playbook()
            fresh[tree.label].append(seconds)
            slow[f"fresh-{tree.label}"] = slowest_tasks(out)
            log(f"fresh converge {tree.label} #{i + 1}: {seconds:.1f} s ({recap(out)})")
        host_up("dc-bench-floor")
        fresh["floor"].append(shell_floor("dc-bench-floor"))
        log(f"shell floor #{i + 1}: {fresh['floor'][-1]:.1f} s")
    host_down("dc-bench-floor")
    results["fresh"] = fresh
    rerun = {"head": [], "base": []}
    check = {"head": [], "base": []}
    for i in range(runs):
        for tree in (head, base):
            seconds, out = tree.playbook()
            rerun[tree.label].append(seconds)
            results.setdefault("rerun_recap", {})[tree.label] = recap(out)
            slow[f"rerun-{tree.label}"] = slowest_tasks(out)
            log(f"re-run {tree.label} #{i + 1}: {seconds:.1f} s ({recap(out)})")
            seconds, out = tree.playbook("--check", "--diff")
            check[tree.label].append(seconds)
            results.setdefault("check_recap", {})[tree.label] = recap(out)
            log(f"--check --diff {tree.label} #{i + 1}: {seconds:.1f} s ({recap(out)})")
    results["rerun"], results["check"], results["slowest"] = rerun, check, slow


# --- throughput -----------------------------------------------------------------------------

PROBE = "/var/tmp/bench_throughput_probe.py"
HAND = "worker --hostname=hand@%h --loglevel=INFO --queues=celery --concurrency=2 --pool=prefork"
# Warm shutdown, then wait for every process to end ("han[d]" so the pattern does not match the
# shell running it).
STOP_HAND = (
    "pkill -TERM -f hostname=han[d]@; "
    "while pgrep -f hostname=han[d]@ >/dev/null; do sleep 0.2; done"
)
WORKERS = {
    # The pool the role deployed: systemd unit, sandbox, INFO log lines to the journal.
    "deployed": {"start": "systemctl start djangoapp-worker@default.service",
                 "stop": "systemctl stop djangoapp-worker@default.service"},
    # Diagnosis only (the role keeps both): the deployed unit without its system call filter,
    # and with its per-task INFO lines off (a runtime drop-in each, removed afterwards).
    "deployed-no-syscall-filter": {
        "dropin": "[Service]\nSystemCallFilter=\n",
        "start": "systemctl start djangoapp-worker@default.service",
        "stop": "systemctl stop djangoapp-worker@default.service",
    },
    "deployed-warning-log": {
        "dropin": "[Service]\nEnvironmentFile=/run/bench-warning.env\n",
        "prepare": "printf 'CELERY_WORKER_OPTIONS=\"--queues=celery --concurrency=2 --pool=prefork "
        "--loglevel=WARNING\"\\n' >/run/bench-warning.env",
        "start": "systemctl start djangoapp-worker@default.service",
        "stop": "systemctl stop djangoapp-worker@default.service",
    },
    # The same command line, virtualenv, environment and settings, started by hand as the app
    # user: its log lines go to a file.
    "hand": {"start": f"djangoapp-celery {HAND} >/var/tmp/hand.log 2>&1", "stop": STOP_HAND},
    # The same, its log lines through the journal (systemd-cat): what the journal costs.
    "hand-journal": {"start": f"djangoapp-celery {HAND} 2>&1 | systemd-cat -t hand-worker",
                     "stop": STOP_HAND},
}  # fmt: skip


def probe(container: str, mode: str, tasks: int, background=False):
    argv = ["docker", "exec", "-e", f"BENCH_MODE={mode}", "-e", f"BENCH_TASKS={tasks}",
            container, "djangoapp-manage", "shell", "-c",
            f"import runpy; runpy.run_path('{PROBE}', run_name='__main__')"]  # fmt: skip
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return run(argv)


DROPIN = "/run/systemd/system/djangoapp-worker@default.service.d/bench.conf"


def dropin(container: str, content: str | None) -> None:
    """Give the deployed pool a runtime drop-in (or take it away)."""
    if content is None:
        script = f"rm -f {DROPIN}"
    else:
        script = f"mkdir -p {os.path.dirname(DROPIN)} && printf '%s' '{content}' > {DROPIN}"
    run(["docker", "exec", container, "sh", "-c", script + " && systemctl daemon-reload"])


def one_throughput_round(container: str, worker: str, tasks: int) -> float:
    spec = WORKERS[worker]
    if "prepare" in spec:
        run(["docker", "exec", container, "sh", "-c", spec["prepare"]])
    if "dropin" in spec:
        dropin(container, spec["dropin"])
    probe(container, "publish", tasks)
    watcher = probe(container, "watch", tasks, background=True)
    for line in watcher.stdout:  # Django's shell may print a line of its own first
        if line.strip() == "ready":
            break
    if worker.startswith("deployed"):
        run(["docker", "exec", container, "sh", "-c", spec["start"]])
    else:
        run(["docker", "exec", "-d", container, "sh", "-c", spec["start"]])
    out = watcher.stdout.read()
    watcher.wait()
    run(["docker", "exec", container, "sh", "-c", spec["stop"]])
    if "dropin" in spec:
        dropin(container, None)
    if watcher.returncode != 0:
        sys.exit(f"throughput probe failed: {out}")
    return json.loads(out.strip().splitlines()[-1])["rate"]


def throughput(head: Tree, runs: int, tasks: int, results: dict) -> None:
    container = head.container
    run(["docker", "cp", str(ROOT / "bench/throughput_probe.py"), f"{container}:{PROBE}"])
    run(["docker", "exec", container, "chmod", "0644", PROBE])
    # Beat would add its own tasks to the queue being timed.
    run(["docker", "exec", container, "systemctl", "stop", "djangoapp-worker@default.service",
         "djangoapp-beat.service"])  # fmt: skip
    rates = {worker: [] for worker in WORKERS}
    for i in range(runs):
        for worker in WORKERS:
            rates[worker].append(one_throughput_round(container, worker, tasks))
            log(f"throughput {worker} #{i + 1}: {rates[worker][-1]:.0f} tasks/s")
    # The throughput setting, for the trade-off the README quotes: the tutorial's defaults
    # (early acknowledgement, prefetch 4), deployed by the role, the same pool otherwise.
    tutorial = {
        "django_celery_task_acks_late": False,
        "django_celery_worker_prefetch_multiplier": 4,
    }
    head.playbook("-e", json.dumps(tutorial))
    run(["docker", "exec", container, "systemctl", "stop", "djangoapp-worker@default.service",
         "djangoapp-beat.service"])  # fmt: skip
    rates["deployed-tutorial-defaults"] = []
    for i in range(runs):
        rates["deployed-tutorial-defaults"].append(
            one_throughput_round(container, "deployed", tasks)
        )
        log(f"throughput tutorial defaults #{i + 1}: {rates['deployed-tutorial-defaults'][-1]:.0f}")
    head.playbook()
    run(["docker", "exec", container, "systemctl", "start", "djangoapp-worker@default.service",
         "djangoapp-beat.service"])  # fmt: skip
    dropped = run(
        ["docker", "exec", container, "journalctl", "-u", "systemd-journald", "--no-pager"],
        check=False,
    )  # fmt: skip
    suppressed = len(re.findall("Suppressed", dropped))
    results["throughput"] = {"tasks": tasks, "rates": rates, "journal_suppressed": suppressed}


# --- fleet ----------------------------------------------------------------------------------


def fleet(tree: Tree, runs: int, results: dict) -> None:
    """The Molecule cluster scenario of a tree: converge, then re-runs and rolling redeploys."""
    mol = ["molecule", "converge", "--scenario-name", "cluster"]
    env = dict(ENV, ANSIBLE_CONFIG=str(tree.path / "ansible.cfg"))
    run(["molecule", "destroy", "--scenario-name", "cluster"], cwd=tree.path, env=env)
    seconds, out = timed(mol, cwd=tree.path, env=env)
    log(f"fleet converge {tree.label}: {seconds:.0f} s")
    entry = results.setdefault("fleet", {}).setdefault(tree.label, {"rerun": [], "redeploy": []})
    entry["converge"] = seconds
    release = None
    for i in range(runs):
        # The same release as the run before (a redeploy moved it): an idempotent re-run.
        again = mol + (["--", "-e", f"django_celery_release={release}"] if release else [])
        seconds, out = timed(again, cwd=tree.path, env=env)
        entry["rerun"].append(seconds)
        entry["rerun_recap"] = recap(out)
        results.setdefault("slowest", {})[f"fleet-rerun-{tree.label}"] = slowest_tasks(out)
        log(f"fleet re-run {tree.label} #{i + 1}: {seconds:.0f} s")
        release = f"bench{int(time.time())}"
        redeploy = mol + ["--", "-e", f"django_celery_release={release}"]
        seconds, out = timed(redeploy, cwd=tree.path, env=env)
        entry["redeploy"].append(seconds)
        log(f"fleet rolling redeploy {tree.label} #{i + 1}: {seconds:.0f} s")
    run(["molecule", "destroy", "--scenario-name", "cluster"], cwd=tree.path, env=env)


# --- report ---------------------------------------------------------------------------------


LABELS = {"head": "this tree", "base": "baseline"}


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt(values: list[float], unit="s") -> str:
    spread = f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"
    return f"{med(values):.1f} {unit} ({spread}, n={len(values)})"


def report(results: dict, args, command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run`; do not edit by hand. Each figure is the median of the runs "
        "(range and count in brackets); each baseline ran in the same run on the same machine, "
        "alternating with what it is compared with. Benchmarks, not tests: nothing asserts a time.",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"- This tree: `{results['head_ref']}`; baseline: `{results['base_ref']}` "
        "(the commit before the speed work)",
        f"- Versions: {results['versions']}",
        "- Hosts: Debian 12 systemd containers (`django-celery-systemd:bookworm`) reached with "
        "`docker exec` (community.docker.docker), the lab's inventory (`inventory/lab`).",
        "",
        "| what | this tree | baseline | ratio (baseline / this) |",
        "| --- | --- | --- | --- |",
    ]
    if "fresh" in results:
        f = results["fresh"]
        lines += [
            f"| fresh converge, one host (`site.yml`) | {fmt(f['head'])} | {fmt(f['base'])} | "
            f"{med(f['base']) / med(f['head']):.2f}x |",
            f"| the same vs the shell floor (`bench/shell_floor.sh`) | {fmt(f['head'])} | "
            f"{fmt(f['floor'])} | {med(f['head']) / med(f['floor']):.2f}x the floor |",
            f"| idempotent re-run of the lab (`site.yml`) | {fmt(results['rerun']['head'])} | "
            f"{fmt(results['rerun']['base'])} | "
            f"{med(results['rerun']['base']) / med(results['rerun']['head']):.2f}x |",
            f"| `--check --diff` on the converged lab | {fmt(results['check']['head'])} | "
            f"{fmt(results['check']['base'])} | "
            f"{med(results['check']['base']) / med(results['check']['head']):.2f}x |",
        ]
    fleet_done = {
        label: entry
        for label, entry in results.get("fleet", {}).items()
        if entry.get("rerun") and entry.get("redeploy")
    }
    fleet = results.get("fleet", {})
    if all("converge" in fleet.get(label, {}) for label in ("head", "base")):
        h, b = fleet["head"]["converge"], fleet["base"]["converge"]
        lines.append(
            f"| `cluster` fleet (4 hosts) first converge (`molecule converge`, n=1) | {h:.1f} s | "
            f"{b:.1f} s | {b / h:.2f}x |"
        )
    if {"head", "base"} <= set(fleet_done):
        h, b = fleet_done["head"], fleet_done["base"]
        lines += [
            f"| `cluster` fleet (4 hosts) idempotent re-run (`molecule converge`) | "
            f"{fmt(h['rerun'])} | {fmt(b['rerun'])} | {med(b['rerun']) / med(h['rerun']):.2f}x |",
            f"| `cluster` rolling redeploy, new release (`-e django_celery_release=...`) | "
            f"{fmt(h['redeploy'])} | {fmt(b['redeploy'])} | "
            f"{med(b['redeploy']) / med(h['redeploy']):.2f}x |",
        ]
    if "throughput" in results:
        t = results["throughput"]
        r = t["rates"]
        lines += [
            "",
            f"Worker throughput, {t['tasks']} no-op tasks (`demo.tasks.add(1, 1)`, results stored) "
            "queued first, then one pool of 2 prefork processes started; timed from its first "
            "task to the last acknowledgement (`bench/throughput_probe.py`):",
            "",
            "| worker | tasks/s | ratio to the hand-started worker |",
            "| --- | --- | --- |",
        ]
        for worker, rates in r.items():
            lines.append(
                f"| {worker} | {fmt(rates, 'tasks/s')} | {med(rates) / med(r['hand']):.3f} |"
            )
        lines += [
            "",
            "deployed: the role's unit (sandbox, log lines to the journal); hand: the same "
            "command line, virtualenv, environment and settings started by hand as the app user, "
            "logging to a file; hand-journal: the same, its log lines piped into the journal; "
            "deployed-no-syscall-filter and deployed-warning-log: the deployed unit with its "
            "system call filter, or its per-task INFO lines, taken away by a runtime drop-in "
            "(diagnosis only); deployed-tutorial-defaults: the role deployed with "
            "`django_celery_task_acks_late: false` and "
            "`django_celery_worker_prefetch_multiplier: 4` "
            "(a task in flight is lost when its worker dies). "
            f"journald 'Suppressed' messages seen: {t['journal_suppressed']}.",
        ]
    if "cold_wheelhouse" in results:
        lines += [
            "",
            "The controller's wheelhouse (offline installs) was already filled for the timed "
            "converges; filling it from PyPI the first time adds "
            f"{results['cold_wheelhouse']:.1f} s once (`pip download` of `app/requirements.txt` "
            "for Python 3.11, into an empty directory). The shell floor installs from the same "
            "wheelhouse.",
        ]
    lines.append("")
    for key, what in (("rerun_recap", "idempotent re-run"), ("check_recap", "`--check --diff`")):
        for label, text in results.get(key, {}).items():
            lines.append(f"- Recap of the last {what}, {LABELS[label]}: `{text}`")
    if results.get("slowest"):
        lines += ["", "## Slowest tasks (profile_tasks, last run of each kind)", ""]
        for kind, rows in results["slowest"].items():
            lines += [f"**{kind}**", "", "| task | s |", "| --- | --- |"]
            lines += [f"| {name} | {sec:.2f} |" for name, sec in rows] + [""]
    if results.get("notes"):
        lines += ["", "Notes on this run:", ""] + [f"- {note}" for note in results["notes"]]
    if results.get("failed_parts"):
        lines += ["", f"**Parts that failed in this run** (see its log): {results['failed_parts']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (median)")
    parser.add_argument("--tasks", type=int, default=10000, help="tasks per throughput round")
    parser.add_argument("--baseline", default="bccc18e", help="git ref of the baseline")
    parser.add_argument(
        "--only", choices=["single", "throughput", "fleet"], action="append",
        help="run only these parts (default: single and throughput; fleet with --fleet)",
    )  # fmt: skip
    parser.add_argument("--fleet", action="store_true", help="also the 4-host cluster (~30 min)")
    parser.add_argument("--output", default=str(ROOT / "docs/BENCHMARKS.md"))
    parser.add_argument("--report-only", metavar="RESULTS_JSON", help="rewrite the report only")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
        Path(args.output).write_text(report(saved, args, saved["command"]))
        return
    parts = set(args.only or ["single", "throughput"] + (["fleet"] if args.fleet else []))
    command = "bash bench/run " + " ".join(sys.argv[1:])
    workdir = Path(tempfile.mkdtemp(prefix="django-celery-bench."))
    baseline = workdir / "baseline"
    run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline])
    results = {
        "command": command,
        "head_ref": run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]).strip(),
        "base_ref": run(["git", "-C", str(baseline), "describe", "--always"]).strip(),
        "versions": run(["ansible", "--version"]).splitlines()[0]
        + "; "
        + run(["docker", "version", "--format", "Docker engine {{.Server.Version}}"]).strip(),
    }
    head = Tree("head", ROOT, "dc-bench-head", workdir)
    base = Tree("base", baseline, "dc-bench-base", workdir)
    failed = []

    def part(name, function, *arguments):
        # A part that fails is reported as failed; the others still run and are written.
        try:
            function(*arguments)
        except SystemExit as error:
            log(f"{name} failed: {error}")
            failed.append(name)

    def throughput_part():
        if "single" not in parts:
            host_up(head.container)
            head.playbook()
        throughput(head, args.runs, args.tasks, results)

    try:
        if "single" in parts:
            part("single", single_host, head, base, args.runs, results)
        if "throughput" in parts:
            part("throughput", throughput_part)
        if "fleet" in parts:
            for tree in (head, base):
                part(f"fleet-{tree.label}", fleet, tree, args.runs, results)
    finally:
        for tree in (head, base):
            host_down(tree.container)
        run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
        results["failed_parts"] = failed
        (workdir / "results.json").write_text(json.dumps(results, indent=2))
        log(f"raw results: {workdir / 'results.json'}")
        Path(args.output).write_text(report(results, args, command))
        log(f"wrote {args.output}")
    if failed:
        sys.exit(f"failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
