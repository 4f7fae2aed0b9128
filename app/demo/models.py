from django.db import models


class Heartbeat(models.Model):
    """One row per heartbeat name ("beat"); updated each time the task runs."""

    name = models.CharField(max_length=64, unique=True)
    last_run = models.DateTimeField(null=True, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} (count={self.count}, last_run={self.last_run})"


class SlowTaskCompletion(models.Model):
    """Record of demo.tasks.slow, one row per caller-supplied task_id.

    ``starts`` counts every execution that began, ``runs`` every one that finished: a task
    killed mid-run and redelivered shows starts=2, runs=1.
    """

    task_id = models.CharField(max_length=255, unique=True)
    starts = models.PositiveIntegerField(default=0)
    runs = models.PositiveIntegerField(default=0)
    hostname = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.task_id} (starts={self.starts}, runs={self.runs})"
