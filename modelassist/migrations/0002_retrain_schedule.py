"""The retraining schedule (DESIGN step 9): a django-celery-beat PeriodicTask, every 3 days
(Jin et al. retrained about every three days as data came in). It retrains only campaigns
with scans curated since their last run; a data manager can change or disable it in the admin.
"""

from django.db import migrations

TASK_NAME = "retrain campaigns with new curated scans"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=3, period="days")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "modelassist.tasks.retrain_scheduled",
            "interval": every,
            "queue": "train",
            "enabled": True,
            "description": "Retrain every campaign with newly curated scans since its last training run.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("modelassist", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
