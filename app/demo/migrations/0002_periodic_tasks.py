"""Install the beat schedule (add-every-30-seconds, heartbeat) for the DatabaseScheduler."""

from django.conf import settings
from django.db import migrations

from demo.periodic import install_periodic_tasks


def install(apps, schema_editor):
    install_periodic_tasks(apps, settings.CELERY_HEARTBEAT_INTERVAL)


class Migration(migrations.Migration):
    dependencies = [
        ("demo", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(install, migrations.RunPython.noop),
    ]
