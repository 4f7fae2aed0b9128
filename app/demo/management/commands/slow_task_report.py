import json

from django.core.management.base import BaseCommand

from demo.models import SlowTaskCompletion


class Command(BaseCommand):
    help = (
        "Print, as JSON, how many demo.tasks.slow ids started and completed, how many started "
        "more than once, how many completed more than once, and the hosts that completed them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prefix", default="", help="only count task ids with this prefix")

    def handle(self, *args, **options):
        rows = SlowTaskCompletion.objects.filter(task_id__startswith=options["prefix"])
        completed = sorted(rows.filter(runs__gt=0).values_list("task_id", flat=True))
        report = {
            "started": rows.filter(starts__gt=0).count(),
            "completed": len(completed),
            "started_twice": rows.filter(starts__gt=1).count(),
            "duplicated": rows.filter(runs__gt=1).count(),
            "ids": completed,
            "hosts": sorted(set(rows.filter(runs__gt=0).values_list("hostname", flat=True))),
        }
        self.stdout.write(json.dumps(report))
