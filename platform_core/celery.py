"""The Celery app. Queues per workload: ingest, assist, train."""

import os

from celery import Celery

from platform_core import broker

broker.register()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")

app = Celery("curatect")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Task modules outside the apps' tasks.py: the PACS receiver/puller, and sending SEGs back.
app.autodiscover_tasks(["pacs"])
app.autodiscover_tasks(["modelassist"], related_name="pacs_send")


def task_named(name: str):
    """A registered task by name, for services whose tasks module imports them (no import cycle)
    and that still want `.delay` (it honours eager mode, `send_task` does not). Celery discovers
    the apps' task modules lazily, so import them first when the name is not known yet."""
    if name not in app.tasks:
        app.loader.import_default_modules()
    return app.tasks[name]
