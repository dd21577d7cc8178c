"""The abstract job: status with one declared transition table, progress, message, reason,
start and finish times and the worker node running it.

A kind inherits `Job`, keeps its own `status` field (its own choices: the strings the API has
always shown) and says in class attributes what the lifecycle services need to know about it.
Concrete subclasses are the registry: `job_kinds()` finds them, so the core never imports the
apps above it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from django.apps import apps
from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # waiting for a worker (a task is, or will be, on its way)
    RUNNING = "running", "Running"  # a worker claimed it; `worker` names the node
    DONE = "done", "Done"  # finished; what it produced is on the row
    FAILED = "failed", "Failed"  # nothing (more) will happen; the reason field says why


Transitions = dict[str, frozenset[str]]

# queued → running → done/failed. A queued job may fail without running (cancelled, refused);
# a running one goes back to queued only when the sweep at worker start re-queues it.
DEFAULT_TRANSITIONS: Transitions = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.QUEUED}),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
}

LOST_WORKER = "the worker running it stopped (restart) before it finished"


class Job(models.Model):
    """What every job row has. Only core.jobs.services changes `status`."""

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0)  # 0..1, for the person waiting
    message = models.CharField(max_length=300, blank=True)  # what it is doing now
    error = models.TextField(blank=True)  # why it failed, for a person to act on
    # The Celery node running it: when that node starts again, the sweep handles what it left.
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The kind's lifecycle, declared once. Every status change must be an edge of this table.
    job_transitions: ClassVar[Transitions] = DEFAULT_TRANSITIONS
    job_done_status: ClassVar[str] = JobStatus.DONE
    # The audit action of a failure (and of the sweep's re-queue, with "_requeue").
    job_audit_action: ClassVar[str] = "job"
    # True when running it again from the start is safe: the sweep re-queues it (and sends
    # `job_task` again) instead of failing it.
    job_requeue_on_restart: ClassVar[bool] = False
    job_task: ClassVar[str] = ""  # Celery task name, sent with job_task_args() on re-queue
    job_lost_reason: ClassVar[str] = LOST_WORKER
    # How long a run may last at most; one running longer on any node is lost (its node was
    # replaced under another name, or the hard time limit killed it without a word). None: the
    # hard time limit of `job_task`, or no limit when the kind has no task of its own.
    job_max_running: ClassVar[timedelta | None] = None
    # Where the reason of a failure goes (a kind may keep its own field name, e.g. "detail").
    job_reason_field: ClassVar[str] = "error"

    class Meta:
        abstract = True

    @classmethod
    def job_allowed(cls, old: str, new: str) -> bool:
        return new in cls.job_transitions.get(old, frozenset())

    @classmethod
    def job_sources(cls, new: str) -> list[str]:
        """The statuses a job may be in to move to `new`."""
        return [old for old, targets in cls.job_transitions.items() if new in targets]

    def job_reason_fields(self, reason: str) -> dict[str, Any]:
        """The columns that record a failure's reason (a kind with a report overrides this)."""
        return {self.job_reason_field: reason}

    def job_task_args(self) -> tuple:
        return (self.pk,)


def job_kinds() -> list[type[Job]]:
    """Every installed job kind: the concrete subclasses of Job."""
    return [m for m in apps.get_models() if issubclass(m, Job)]
