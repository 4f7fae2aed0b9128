import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from demo.models import Heartbeat
from demo.tasks import HEARTBEAT_NAME


class Command(BaseCommand):
    help = "Print the heartbeat's last run, age and count as JSON."

    def handle(self, *args, **options):
        beat = Heartbeat.objects.filter(name=HEARTBEAT_NAME).first()
        last_run = beat.last_run if beat else None
        report = {
            "last_run": last_run.isoformat() if last_run else None,
            "age_seconds": (
                round((timezone.now() - last_run).total_seconds(), 3) if last_run else None
            ),
            "count": beat.count if beat else 0,
        }
        self.stdout.write(json.dumps(report))
