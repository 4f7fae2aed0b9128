import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu import Connection


class Command(BaseCommand):
    help = (
        "Print, as JSON, how many messages the Redis broker holds as delivered but not yet "
        "acknowledged (kombu's unacked hash), how old the oldest is, and in how many seconds "
        "the visibility timeout hands it to another worker."
    )

    def handle(self, *args, **options):
        options = dict(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {})
        with Connection(settings.CELERY_BROKER_URL, transport_options=options) as conn:
            if conn.transport.driver_type != "redis":
                raise CommandError(
                    f"broker_unacked reads Redis only; this broker is {conn.transport.driver_type} "
                    "(RabbitMQ: rabbitmqctl list_queues name messages_unacknowledged)"
                )
            channel = conn.default_channel
            client = channel.client
            # The channel's client adds kombu's global_keyprefix itself.
            count = client.hlen(channel.unacked_key)
            oldest = client.zrange(channel.unacked_index_key, 0, 0, withscores=True)
        visibility = float(channel.visibility_timeout)
        age = round(time.time() - oldest[0][1], 1) if oldest else None
        report = {
            "unacked": count,
            "oldest_age_seconds": age,
            "visibility_timeout_seconds": visibility,
            "redelivered_in_seconds": None if age is None else round(max(visibility - age, 0), 1),
        }
        self.stdout.write(json.dumps(report))
