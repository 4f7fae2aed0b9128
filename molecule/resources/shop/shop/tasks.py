import socket

from celery import shared_task


@shared_task
def ping():
    return f"pong from {socket.gethostname()}"


@shared_task
def tick():
    """Run by beat every few seconds (CELERY_BEAT_SCHEDULE): records that it ran."""
    from shop.models import Tick

    return Tick.objects.create(host=socket.gethostname()).pk
