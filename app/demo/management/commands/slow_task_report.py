import json
import time

from django.core.management.base import BaseCommand

from demo.models import SlowTaskCompletion


class Command(BaseCommand):
    help = (
        "Print, as JSON, how many demo.tasks.slow ids started and completed, how many started "
        "more than once, how many completed more than once, and the hosts that completed them. "
        "With --until-started or --until-completed, first wait (polling in this process, up to "
        "--timeout seconds) until that many ids started or completed; 'reached' says whether "
        "they did. Tests wait this way rather than starting one command per poll."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prefix", default="", help="only count task ids with this prefix")
        parser.add_argument("--until-started", type=int, default=0, metavar="N")
        parser.add_argument("--until-completed", type=int, default=0, metavar="N")
        parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
        parser.add_argument("--interval", type=float, default=0.5, metavar="SECONDS")

    def handle(self, *args, **options):
        waiting = options["until_started"] or options["until_completed"]
        deadline = time.monotonic() + options["timeout"]
        while True:
            report = self.report(options["prefix"])
            reached = (
                report["started"] >= options["until_started"]
                and report["completed"] >= options["until_completed"]
            )
            if not waiting or reached or time.monotonic() >= deadline:
                break
            time.sleep(options["interval"])
        if waiting:
            report["reached"] = reached
        self.stdout.write(json.dumps(report))

    @staticmethod
    def report(prefix: str) -> dict:
        rows = SlowTaskCompletion.objects.filter(task_id__startswith=prefix)
        completed = sorted(rows.filter(runs__gt=0).values_list("task_id", flat=True))
        return {
            "started": rows.filter(starts__gt=0).count(),
            "completed": len(completed),
            "started_twice": rows.filter(starts__gt=1).count(),
            "duplicated": rows.filter(runs__gt=1).count(),
            "ids": completed,
            "hosts": sorted(set(rows.filter(runs__gt=0).values_list("hostname", flat=True))),
        }
