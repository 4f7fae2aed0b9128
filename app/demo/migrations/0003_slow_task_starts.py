from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("demo", "0002_periodic_tasks"),
    ]

    operations = [
        migrations.AddField(
            model_name="slowtaskcompletion",
            name="starts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="slowtaskcompletion",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="slowtaskcompletion",
            name="completed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
