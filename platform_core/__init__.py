"""CurateCT core: settings, Celery app and the core domain (institutions to batches)."""

from platform_core.celery import app as celery_app

__all__ = ["celery_app"]
