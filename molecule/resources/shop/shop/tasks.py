import socket

from celery import shared_task


@shared_task
def ping():
    return f"pong from {socket.gethostname()}"
