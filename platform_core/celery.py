"""The Celery app. Queues per workload: ingest, assist, train."""

import os

from celery import Celery

from platform_core import broker

broker.register()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")

app = Celery("curatect")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
