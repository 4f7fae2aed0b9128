from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand

from demo.periodic import install_periodic_tasks


class Command(BaseCommand):
    help = (
        "Create or update the beat schedule (add-every-30-seconds, heartbeat every "
        "CELERY_HEARTBEAT_INTERVAL seconds) in django_celery_beat's tables. Idempotent."
    )

    def handle(self, *args, **options):
        results = install_periodic_tasks(apps, settings.CELERY_HEARTBEAT_INTERVAL)
        for name, state in results.items():
            self.stdout.write(f"{name}: {state}")
