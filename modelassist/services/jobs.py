"""What exports and training runs share: how a job that failed is recorded."""

from __future__ import annotations

from django.utils import timezone

from core.api_errors import DomainError
from core.services.audit import audit_record
from modelassist.models import DatasetExport, JobStatus, TrainingRun


def job_fail(job: DatasetExport | TrainingRun, exc: Exception, *, action: str) -> None:
    """Mark a running job failed with a reason the data manager can read, and audit it."""
    detail = exc.detail if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
    type(job).objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED, error=str(detail)[:4000], finished_at=timezone.now(), message="failed"
    )
    audit_record(
        actor=None,
        actor_label="system",
        action=action,
        obj=job,
        campaign=job.campaign_id,
        from_state=JobStatus.RUNNING,
        to_state=JobStatus.FAILED,
        error=str(detail)[:500],
    )
