import json

from django.core.management.base import BaseCommand

from demo.health import check_queues, open_broker_connection


class Command(BaseCommand):
    help = (
        "Print, as JSON, the messages waiting in each queue of the fleet and the tasks delivered "
        "but not yet acknowledged (count, age of the oldest): the figures of /health/'s "
        "'queues' check and of the monitoring's queue-depth and unacked metrics, for hosts "
        "without monitoring."
    )

    def handle(self, *args, **options):
        conn = open_broker_connection()
        try:
            report = check_queues(conn)
        finally:
            conn.release()
        self.stdout.write(json.dumps(report))
