from django.db import models


class Tick(models.Model):
    """One row per run of the periodic tick task: beat fired and a worker ran it."""

    at = models.DateTimeField(auto_now_add=True)
    host = models.CharField(max_length=255)

    def __str__(self):
        return f"tick at {self.at} on {self.host}"
