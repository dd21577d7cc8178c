"""Imaging state: DICOM import jobs (studies, scans and instances are the core's)."""

from __future__ import annotations

from django.db import models

from core.models import Campaign, Institution, User


class ImportJob(models.Model):
    """One DICOM import: its source, progress and a per-file / per-series report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"  # something was stored; the report may still list rejected input
        FAILED = "failed", "Failed"  # nothing stored, refused input, an error, or cancelled; see report

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="imports")
    campaign = models.ForeignKey(Campaign, on_delete=models.SET_NULL, null=True, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    source = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    report = models.JSONField(default=dict, blank=True)
    # What the data manager asked for, e.g. {"import_incomplete": true}.
    options = models.JSONField(default=dict, blank=True)
    # The Celery node running it: a node that starts again fails what it left running.
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when imports lived in the core app (no data moved).
        db_table = "platform_core_importjob"
