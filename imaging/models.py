"""Imaging state: DICOM import jobs (studies, scans and instances are the core's)."""

from __future__ import annotations

from typing import Any

from django.db import models

from core.jobs.models import Job
from core.models import Campaign, Institution, User

DEAD_WORKER = (
    "the worker running this import stopped (crash or restart) before it finished; series it "
    "had not stored were not stored, and its raw files were deleted — import again"
)


class ImportJob(Job):
    """One DICOM import: its source, progress and a per-file / per-series report.

    Its lifecycle is core.jobs'; a failure's reason is the report's "error" (what the API
    shows). A lost worker's import fails: its raw files are swept, so it cannot run again.
    """

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
    report = models.JSONField(default=dict, blank=True)
    # What the data manager asked for, e.g. {"import_incomplete": true}.
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    error = None  # type: ignore[assignment]  # the reason is report["error"]

    job_audit_action = "import"
    job_task = "imaging.tasks.import_run"
    job_lost_reason = DEAD_WORKER

    class Meta:
        # The table keeps the name it had when imports lived in the core app (no data moved).
        db_table = "platform_core_importjob"

    def job_reason_fields(self, reason: str) -> dict[str, Any]:
        return {"report": {**(self.report or {}), "error": reason}}
