import json

from django.core.management.base import BaseCommand

from demo.models import SlowTaskCompletion


class Command(BaseCommand):
    help = "Print how many demo.tasks.slow ids completed and how many ran more than once, as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--prefix", default="", help="only count task ids with this prefix")

    def handle(self, *args, **options):
        rows = SlowTaskCompletion.objects.filter(task_id__startswith=options["prefix"])
        ids = sorted(rows.values_list("task_id", flat=True))
        duplicated = rows.filter(runs__gt=1).count()
        self.stdout.write(json.dumps({"completed": len(ids), "duplicated": duplicated, "ids": ids}))
