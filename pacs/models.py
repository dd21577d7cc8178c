"""PACS connectivity state: remote PACS endpoints, pulled studies, original UIDs, label sends.

The `pacs` app's tables keep the names they had inside the core app (no data moved).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models

from core import sealing
from core.jobs.models import DEFAULT_TRANSITIONS, Job, JobStatus


class RemotePacs(models.Model):
    """A PACS of an institution: searched and pulled over DICOMweb, sent labels back to.

    The secret (password or bearer token) is write-only in the API and never logged. It is stored
    sealed (core/sealing.py): set it with set_secret(), read it with secret_value().
    """

    class Auth(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "HTTP Basic (username + password)"
        BEARER = "bearer", "Bearer token"

    class SendMethod(models.TextChoices):
        NONE = "", "Do not send labels"
        STOW = "stow", "DICOMweb STOW-RS"
        CSTORE = "cstore", "DICOM C-STORE"

    institution = models.ForeignKey(
        "platform_core.Institution", on_delete=models.CASCADE, related_name="remote_pacs"
    )
    name = models.CharField(max_length=100)
    # DICOMweb service root: QIDO/WADO/STOW paths start below it ({url}/studies).
    dicomweb_url = models.URLField(max_length=500, blank=True)
    auth_type = models.CharField(max_length=10, choices=Auth.choices, default=Auth.NONE)
    username = models.CharField(max_length=150, blank=True)
    # The password or token as a Fernet token under CURATECT_SEALING_KEYS; "" when there is none.
    secret_sealed = models.TextField(blank=True)
    # DIMSE peer for C-STORE sends (the remote's AE title, host and port).
    ae_title = models.CharField(max_length=16, blank=True)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    send_method = models.CharField(
        max_length=10, choices=SendMethod.choices, default=SendMethod.NONE, blank=True
    )
    # Send curated labels by itself once a batch is approved (swept by a periodic task).
    send_on_approval = models.BooleanField(default=False)
    # QIDO-RS study search parameters of the periodic pull, e.g. {"StudyDescription": "*CHEST*"};
    # ModalitiesInStudy=CT is always added. 0 minutes: no periodic pull.
    pull_filter = models.JSONField(default=dict, blank=True)
    pull_interval_minutes = models.PositiveIntegerField(default=0)
    # Scans pulled periodically join this campaign (manual pulls name their own).
    pull_campaign = models.ForeignKey(
        "platform_core.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_pull_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "platform_core_remotepacs"
        ordering = ["institution_id", "name"]
        constraints = [models.UniqueConstraint(fields=["institution", "name"], name="uniq_remote_pacs_name")]

    def __str__(self) -> str:
        return self.name

    def set_secret(self, text: str) -> None:
        """Store the password or token, sealed; "" removes it."""
        self.secret_sealed = sealing.seal(text) if text else ""

    def secret_value(self) -> str:
        """The password or token in clear ("" when none); SealingKeyChanged when the sealing keys
        no longer open it."""
        return sealing.unseal(self.secret_sealed) if self.secret_sealed else ""

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_sealed)


class PulledStudy(Job):
    """A study of a remote PACS requested for import. One row per remote and study, so the
    periodic pull never fetches a study twice; a manual pull may request it again.

    Its lifecycle is core.jobs': its pull (an ImportJob) claims it while retrieving it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # waiting for its import job to run
        RUNNING = "running", "Running"  # its import job is retrieving it
        DONE = "done", "Done"  # retrieved and ingested (the job's report says what was stored)
        FAILED = "failed", "Failed"  # could not be retrieved; `detail` says why

    remote = models.ForeignKey(RemotePacs, on_delete=models.CASCADE, related_name="pulled_studies")
    study_uid = models.CharField(max_length=64)  # as the remote PACS knows it (original UID)
    import_job = models.ForeignKey(
        "imaging.ImportJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    error = None  # type: ignore[assignment]  # the reason is `detail` (the API's name)

    # A pull may request a study again, however its last pull ended.
    job_transitions = {
        **DEFAULT_TRANSITIONS,
        JobStatus.DONE: frozenset({JobStatus.QUEUED}),
        JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    }
    job_audit_action = "pacs_pull_study"
    job_reason_field = "detail"
    # It runs inside its pull (pacs.tasks.pull_run, hard limit 6 h 2 min), not as a task of its own.
    job_max_running = timedelta(hours=6, minutes=3)

    class Meta:
        db_table = "platform_core_pulledstudy"
        constraints = [models.UniqueConstraint(fields=["remote", "study_uid"], name="uniq_pulled_study")]


class SeriesOrigin(models.Model):
    """The hospital's own identifiers of a stored scan, recorded when it arrived from a PACS.

    Stored files carry remapped UIDs; labels sent back must reference the originals or the
    hospital's PACS cannot attach them. Re-identifying data, like PatientPseudonym: only the
    send path and data managers of the institution use it.
    """

    scan = models.OneToOneField("platform_core.Scan", on_delete=models.CASCADE, related_name="pacs_origin")
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    sop_uids = models.JSONField()  # original SOP instance UIDs in volume (index) order
    # Original study-level attributes: StudyDate, StudyTime, AccessionNumber, StudyID, ...
    header = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=20)  # "dimse", "stow", "dicomweb" or "lookup"
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "platform_core_seriesorigin"


class PacsSend(Job):
    """One request to send a scan's curated labels, as DICOM SEG, to a remote PACS.

    Its lifecycle is core.jobs'. A send whose worker was lost fails rather than re-queues: the
    PACS may have received it, and a person decides whether to send again."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"  # waiting for the send task
        RUNNING = "running", "Running"  # a worker is building or sending the SEG
        SENT = "sent", "Sent"  # the PACS acknowledged the SEG
        FAILED = "failed", "Failed"  # nothing (more) will happen; `detail` says why

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Requested by a person"
        APPROVAL = "approval", "Batch approval"

    remote = models.ForeignKey(RemotePacs, on_delete=models.CASCADE, related_name="sends")
    scan = models.ForeignKey("platform_core.Scan", on_delete=models.CASCADE, related_name="pacs_sends")
    campaign = models.ForeignKey(
        "platform_core.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The curated revision sent (annotation.Revision; a plain id, the core imports no app above it).
    revision_id = models.BigIntegerField(null=True, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        "platform_core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    method = models.CharField(max_length=10, blank=True)
    seg_sop_uid = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    error = None  # type: ignore[assignment]  # the reason is `detail` (the API's name)

    job_transitions = {
        JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
        JobStatus.RUNNING: frozenset({Status.SENT, JobStatus.FAILED}),
        Status.SENT: frozenset(),
        JobStatus.FAILED: frozenset(),
    }
    job_done_status = Status.SENT
    job_audit_action = "pacs_send"
    job_lost_reason = (
        "the worker sending it stopped (crash or restart) before the PACS acknowledged the SEG; the PACS "
        "may or may not hold it: check there, then send again"
    )
    job_task = "modelassist.pacs_send.send_run"
    job_reason_field = "detail"

    class Meta:
        db_table = "platform_core_pacssend"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["remote", "revision_id"])]
