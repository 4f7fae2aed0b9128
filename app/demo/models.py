from django.db import models


class Heartbeat(models.Model):
    """One row per heartbeat name ("beat"); updated each time the task runs."""

    name = models.CharField(max_length=64, unique=True)
    last_run = models.DateTimeField(null=True, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} (count={self.count}, last_run={self.last_run})"


class SlowTaskCompletion(models.Model):
    """Completion record of demo.tasks.slow, one row per caller-supplied task_id."""

    task_id = models.CharField(max_length=255, unique=True)
    runs = models.PositiveIntegerField(default=0)
    hostname = models.CharField(max_length=255, blank=True, default="")
    completed_at = models.DateTimeField()

    def __str__(self):
        return f"{self.task_id} (runs={self.runs})"
