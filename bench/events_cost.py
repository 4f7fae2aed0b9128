"""What Celery's task events cost: worker throughput with them off and on, side by side.

Monitoring's Flower counts tasks from task events, which the role turns on with Flower: every
task then makes more broker messages (sent, received, started, succeeded). This measures what
that costs the workers of a deployed fleet with Flower subscribed, in one run, alternating the
two modes, and reports the medians and their ratio:

    python bench/events_cost.py --container dc-cluster-worker1 [--runs 3] [--tasks 2000]

The container is a host of the fleet with the app and beat (the Molecule cluster scenario's
worker1, or any deployed host reachable with docker exec). Each round: every worker stops
consuming "celery" (celery control cancel_consumer), task events are switched off or on on
every worker (disable_events / enable_events), N no-op tasks (demo.tasks.add(1, 1)) are
queued, the workers consume again, and bench/throughput_probe.py times the first task taken to
the last acknowledged. Beat is stopped meanwhile (its heartbeat would join the queue) and
started again at the end, with events on. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "/var/tmp/bench_throughput_probe.py"
NAME = "djangoapp"
QUEUE = "celery"


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}{done.stderr}")
    return done.stdout


def celery(container: str, *args: str) -> str:
    return run(["docker", "exec", container, f"{NAME}-celery", *args])


def probe(container: str, mode: str, tasks: int, background: bool = False):
    argv = ["docker", "exec", "-e", f"BENCH_MODE={mode}", "-e", f"BENCH_TASKS={tasks}",
            container, f"{NAME}-manage", "shell", "-c",
            f"import runpy; runpy.run_path('{PROBE}', run_name='__main__')"]  # fmt: skip
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return run(argv)


def one_round(container: str, events: bool, tasks: int) -> float:
    celery(container, "control", "cancel_consumer", QUEUE)
    celery(container, "control", "enable_events" if events else "disable_events")
    time.sleep(1)
    probe(container, "publish", tasks)
    watcher = probe(container, "watch", tasks, background=True)
    for line in watcher.stdout:  # Django's shell may print a line of its own first
        if line.strip() == "ready":
            break
    celery(container, "control", "add_consumer", QUEUE)
    out = watcher.stdout.read()
    watcher.wait()
    if watcher.returncode != 0:
        sys.exit(f"throughput probe failed: {out}")
    return json.loads(out.strip().splitlines()[-1])["rate"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    container = args.container
    run(["docker", "cp", str(ROOT / "bench/throughput_probe.py"), f"{container}:{PROBE}"])
    run(["docker", "exec", container, "chmod", "0644", PROBE])
    run(["docker", "exec", container, "systemctl", "stop", f"{NAME}-beat.service"])
    rates: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for i in range(args.runs):
            for mode in ("off", "on"):
                rates[mode].append(one_round(container, mode == "on", args.tasks))
                print(f"run {i + 1}, events {mode}: {rates[mode][-1]:.0f} tasks/s", flush=True)
    finally:
        celery(container, "control", "add_consumer", QUEUE)
        celery(container, "control", "enable_events")
        run(["docker", "exec", container, "systemctl", "start", f"{NAME}-beat.service"])
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {args.runs} runs of {args.tasks} no-op tasks, "
        f"`python bench/events_cost.py --container {container} --runs {args.runs} "
        f"--tasks {args.tasks}`:\n\n"
        "| task events | tasks/s (median) | runs |\n| --- | ---: | --- |\n"
        f"| off | {off:.0f} | {', '.join(f'{r:.0f}' for r in rates['off'])} |\n"
        f"| on, Flower subscribed | {on:.0f} | {', '.join(f'{r:.0f}' for r in rates['on'])} |\n"
        f"\nratio on/off: {on / off:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
