"""The one job lifecycle: claim, progress, finish, fail, re-queue, and the sweeps (at worker start, periodic).

Every status change is a compare-and-swap on the row (`filter(pk, status=old).update(new)`,
then check that one row changed): two workers given the same message, a cancel racing a
finish, or a sweep racing a late worker cannot both win. A change the kind's transition table
does not allow is refused (JobTransitionRefused); a change that lost its race returns False.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.api_errors import Conflict, DomainError
from core.jobs.models import Job, JobStatus, job_kinds
from core.models import User
from core.services.audit import audit_record

logger = logging.getLogger(__name__)

RUNNING = JobStatus.RUNNING
QUEUED = JobStatus.QUEUED
FAILED = JobStatus.FAILED


class JobTransitionRefused(Conflict):
    """The kind's transition table has no such edge: a bug in the caller, never a race."""

    code = "job_transition_refused"


def _check_edges(kind: type[Job], sources: Iterable[str], new: str) -> list[str]:
    sources = list(sources)
    bad = [old for old in sources if not kind.job_allowed(old, new)]
    if bad or not sources:
        raise JobTransitionRefused(
            f"a {kind._meta.verbose_name} cannot go from {', '.join(bad) or 'any status'} to {new}"
        )
    return sources


def _in(sources: list[str], *, stale_after: timedelta | None, now) -> Q:
    """Rows in one of `sources`; with `stale_after`, a running row counts only when it started
    that long ago (or never said when): its worker is taken to be lost."""
    fresh = [s for s in sources if s != RUNNING or stale_after is None]
    q = Q(status__in=fresh)
    if stale_after is not None and RUNNING in sources:
        q |= Q(status=RUNNING) & (Q(started_at__isnull=True) | Q(started_at__lt=now - stale_after))
    return q


def _swap(job: Job, q: Q, new: str, fields: dict[str, Any]) -> bool:
    kind = type(job)
    changed = kind._default_manager.filter(q, pk=job.pk).update(status=new, **fields)
    if changed:
        job.status = new
        for name, value in fields.items():
            setattr(job, name, value)
    return bool(changed)


def job_claim(job: Job, *, worker: str = "", stale_after: timedelta | None = None, **fields: Any) -> bool:
    """Take the job for this worker: True for exactly one claimer. `stale_after` lets a worker
    take over a running job that started that long ago (a redelivered message whose first
    consumer is gone); timedelta(0) takes over any running one."""
    kind = type(job)
    sources = [s for s in kind.job_sources(RUNNING) if s != RUNNING]
    if stale_after is not None:
        sources.append(RUNNING)
    now = timezone.now()
    fields = {"worker": worker[:200], "started_at": now, "finished_at": None, **fields}
    return _swap(job, _in(sources, stale_after=stale_after, now=now), RUNNING, fields)


def job_progress(job: Job, fraction: float, message: str | None = None, **fields: Any) -> bool:
    """Record how far a running job got. False when it is no longer running (cancelled,
    failed by the sweep): the worker should stop."""
    if message is not None:
        fields["message"] = message[:300]
    rows = type(job)._default_manager.filter(pk=job.pk, status=RUNNING)
    changed = rows.update(progress=round(max(0.0, min(1.0, fraction)), 4), **fields)
    return bool(changed)


def job_finish(
    job: Job,
    status: str | None = None,
    *,
    actor: User | None = None,
    actor_label: str = "",
    action: str | None = None,
    audit: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """End a running job with `status` (default: the kind's done status) and its results, and
    audit it under `action` (no event when None: the caller writes a richer one in the same
    transaction). False when it was no longer running (a cancel came first)."""
    kind = type(job)
    status = status or kind.job_done_status
    if status in (QUEUED, RUNNING):  # an end, not a re-queue (job_requeue) or a claim
        raise JobTransitionRefused(f"a job cannot finish as {status}")
    _check_edges(kind, [RUNNING], status)
    fields = {"progress": 1.0, "finished_at": timezone.now(), **fields}
    with transaction.atomic():
        if not _swap(job, Q(status=RUNNING), status, fields):
            return False
        if action:
            audit_record(
                actor=actor,
                actor_label=actor_label,
                action=action,
                obj=job,
                from_state=RUNNING,
                to_state=status,
                **(audit or {}),
            )
    return True


def reason_of(exc: BaseException) -> str:
    """A failure's reason as a person reads it."""
    return str(exc.detail) if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"


def job_fail(
    job: Job,
    reason: str | BaseException,
    *,
    actor: User | None = None,
    actor_label: str = "",
    action: str | None = None,
    from_states: Iterable[str] | None = None,
    audit: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Fail a queued or running job with a reason a person can act on, and audit it (the
    kind's `job_audit_action` unless `action` names another). False when it had already
    ended (or was in none of `from_states`)."""
    kind = type(job)
    text = (reason if isinstance(reason, str) else reason_of(reason))[:4000]
    allowed = _check_edges(kind, from_states or [QUEUED, RUNNING], FAILED)
    for _ in range(3):  # the status may move between the read and the swap: read again
        with transaction.atomic():
            old = kind._default_manager.filter(pk=job.pk).values_list("status", flat=True).first()
            if old not in allowed:
                return False
            values = {
                **job.job_reason_fields(text),
                "message": "failed",
                "finished_at": timezone.now(),
                **fields,
            }
            if _swap(job, Q(status=old), FAILED, values):
                audit_record(
                    actor=actor,
                    actor_label=actor_label or ("" if actor else "system"),
                    action=action or kind.job_audit_action,
                    obj=job,
                    from_state=old,
                    to_state=FAILED,
                    reason=text[:500],
                    **(audit or {}),
                )
                return True
    return False


def job_requeue(
    job: Job,
    *,
    from_states: Iterable[str],
    stale_after: timedelta | None = None,
    actor: User | None = None,
    actor_label: str = "",
    action: str | None = None,
    audit: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Put a job back in the queue (a retry of a failed one, a re-request, a lost worker's).
    The caller sends its task after commit. False when it was in none of `from_states`."""
    kind = type(job)
    sources = _check_edges(kind, from_states, QUEUED)
    now = timezone.now()
    values = {"worker": "", "started_at": None, "finished_at": None, "progress": 0.0, **fields}
    with transaction.atomic():
        old = job.status
        if not _swap(job, _in(sources, stale_after=stale_after, now=now), QUEUED, values):
            return False
        if action:
            audit_record(
                actor=actor,
                actor_label=actor_label or ("" if actor else "system"),
                action=action,
                obj=job,
                from_state=old,
                to_state=QUEUED,
                **(audit or {}),
            )
    return True


def jobs_sweep(
    hostname: str, kinds: Iterable[type[Job]] | None = None, *, reason: str | None = None
) -> dict[str, int]:
    """At worker start: a node that is starting runs nothing yet, so jobs still marked running
    by it are orphans of its previous life (killed, out of memory, host restarted). So are
    jobs of any node that have been running longer than their kind may run (job_max_running):
    their node came back under another name, or never. Kinds that are safe to run again are
    re-queued and their task sent again; the others fail with the reason that the worker
    stopped (their kind's, or `reason` for the node's own, e.g. the DICOM listener's)."""
    if not hostname:
        return {"requeued": 0, "failed": 0}
    return _sweep(Q(worker=hostname), f"worker {hostname}", kinds, reason=reason, hostname=hostname)


def jobs_sweep_stale(kinds: Iterable[type[Job]] | None = None) -> dict[str, int]:
    """Every few minutes (beat, core.tasks.jobs_sweep_stale): the jobs of any node running
    longer than their kind may run, as the start-up sweep takes them. Without it, the imports
    the DICOM listener and the STOW endpoint run in their own processes (claimed under no node
    name) stayed "running" after a crash until some worker happened to start."""
    return _sweep(None, "the job sweep", kinds)


def _sweep(
    own: Q | None,
    by: str,
    kinds: Iterable[type[Job]] | None,
    *,
    reason: str | None = None,
    hostname: str = "",
) -> dict[str, int]:
    counts = {"requeued": 0, "failed": 0}
    now = timezone.now()
    for kind in kinds if kinds is not None else job_kinds():
        lost = own
        limit = job_max_running(kind)
        if limit is not None:  # and any node's run older than the longest a run may last
            stale = Q(started_at__lt=now - limit)
            lost = stale if lost is None else lost | stale
        if lost is None:
            continue
        for job in kind._default_manager.filter(lost, status=RUNNING):
            if kind.job_requeue_on_restart and _sweep_requeue(job, by):
                counts["requeued"] += 1
            elif not kind.job_requeue_on_restart and job_fail(
                job,
                reason if reason and job.worker == hostname else kind.job_lost_reason,
                actor_label=by,
                from_states=[RUNNING],
                audit={"worker_lost": True},
            ):
                counts["failed"] += 1
    if any(counts.values()):
        logger.info("job sweep (%s): %d re-queued, %d failed", by, counts["requeued"], counts["failed"])
    return counts


def job_max_running(kind: type[Job]) -> timedelta | None:
    """The longest a run of `kind` may last: its own setting, else its task's hard time limit
    (past it, the pool has killed the task), plus a minute of slack."""
    if kind.job_max_running is not None:
        return kind.job_max_running
    if not kind.job_task:
        return None
    from platform_core.celery import task_named

    try:
        limit = task_named(kind.job_task).time_limit
    except KeyError:  # the task's module is not installed here
        return None
    return timedelta(seconds=limit + 60) if limit else None


def _sweep_requeue(job: Job, by: str) -> bool:
    kind = type(job)
    with transaction.atomic():
        if not job_requeue(
            job,
            from_states=[RUNNING],
            actor_label=by,
            action=f"{kind.job_audit_action}_requeue",
            audit={"reason": kind.job_lost_reason, "worker_lost": True},
            message="re-queued: " + kind.job_lost_reason,
        ):
            return False
        if kind.job_task:
            args = job.job_task_args()
            transaction.on_commit(lambda: _send(kind.job_task, args))
    return True


def _send(name: str, args: tuple) -> None:
    from platform_core.celery import task_named

    task_named(name).delay(*args)
