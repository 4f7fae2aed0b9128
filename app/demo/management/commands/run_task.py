import json

from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.core.management.base import BaseCommand, CommandError

from proj.celery import app as celery_app


def parse_arg(value: str):
    """JSON if it parses (2, 1.5, true, [1, 2], {"a": 1}, "quoted"), else the plain string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


class Command(BaseCommand):
    help = (
        "Send a Celery task by name through the broker, wait for it and print the result as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("task_name", help="e.g. demo.tasks.add")
        parser.add_argument(
            "task_args", nargs="*", metavar="ARG", help="positional args, each parsed as JSON"
        )
        parser.add_argument("--kwargs", default=None, help="keyword args as a JSON object")
        parser.add_argument("--queue", default=None, help="queue to send to (default: celery)")
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for the result"
        )

    def handle(self, *args, **options):
        name = options["task_name"]
        task_args = [parse_arg(a) for a in options["task_args"]]
        task_kwargs = {}
        if options["kwargs"]:
            try:
                task_kwargs = json.loads(options["kwargs"])
            except ValueError as exc:
                raise CommandError(f"--kwargs is not valid JSON: {exc}") from exc
            if not isinstance(task_kwargs, dict):
                raise CommandError("--kwargs must be a JSON object")
        queue = options["queue"] or celery_app.conf.task_default_queue
        timeout = options["timeout"]

        result = celery_app.send_task(name, args=task_args, kwargs=task_kwargs, queue=queue)
        try:
            value = result.get(timeout=timeout, propagate=False)
        except CeleryTimeoutError:
            raise CommandError(
                f"no result for {name} (task id {result.id}) within {timeout:g}s: "
                f"is a worker running and consuming queue '{queue}'?"
            ) from None
        if result.failed():
            raise CommandError(
                f"task {name} (task id {result.id}) failed: {type(value).__name__}: {value}"
            )
        self.stdout.write(json.dumps(value, default=str, sort_keys=True))
