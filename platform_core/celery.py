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
app.autodiscover_tasks(["platform_core.pacs"])
app.autodiscover_tasks(["modelassist"], related_name="pacs_send")
