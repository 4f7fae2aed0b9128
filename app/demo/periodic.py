"""Install the beat schedule into django_celery_beat's tables (idempotently).

Shared by the ``setup_periodic_tasks`` management command (real models) and the
demo data migration (historical models from ``apps.get_model``).
"""

import json

from django.utils import timezone

ADD_TASK_NAME = "add-every-30-seconds"
HEARTBEAT_TASK_NAME = "heartbeat"


def periodic_task_specs(heartbeat_interval: int) -> list[dict]:
    return [
        {"name": ADD_TASK_NAME, "task": "demo.tasks.add", "args": [16, 16], "every": 30},
        {
            "name": HEARTBEAT_TASK_NAME,
            "task": "demo.tasks.heartbeat",
            "args": [],
            "every": int(heartbeat_interval),
        },
    ]


def install_periodic_tasks(apps, heartbeat_interval: int) -> dict[str, str]:
    """Create or update the periodic tasks; return {name: created|updated|unchanged}.

    ``apps`` is an app registry: ``django.apps.apps`` or a migration's ``apps``.
    """
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")

    results: dict[str, str] = {}
    for spec in periodic_task_specs(heartbeat_interval):
        schedule = (
            IntervalSchedule.objects.filter(every=spec["every"], period="seconds")
            .order_by("pk")
            .first()
        )
        if schedule is None:
            schedule = IntervalSchedule.objects.create(every=spec["every"], period="seconds")
        wanted = {
            "task": spec["task"],
            "args": json.dumps(spec["args"]),
            "kwargs": "{}",
            "interval_id": schedule.pk,
            "crontab_id": None,
            "solar_id": None,
            "clocked_id": None,
            "one_off": False,
            "enabled": True,
        }
        task = PeriodicTask.objects.filter(name=spec["name"]).first()
        if task is None:
            PeriodicTask.objects.create(name=spec["name"], **wanted)
            results[spec["name"]] = "created"
            continue
        changed = False
        for field, value in wanted.items():
            current = getattr(task, field)
            if field in ("args", "kwargs"):
                try:
                    same = json.loads(current or "null") == json.loads(value)
                except ValueError:
                    same = False
            else:
                same = current == value
            if not same:
                setattr(task, field, value)
                changed = True
        if changed:
            task.save()
        results[spec["name"]] = "updated" if changed else "unchanged"

    if any(state != "unchanged" for state in results.values()):
        # Tell a running DatabaseScheduler to reload (historical models in a
        # migration do not send the signals that normally do this).
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return results
