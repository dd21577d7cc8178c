"""Model assist: model versions, pre-segmentation runs, dataset exports and their splits,
training runs.

Files (weights, exports) live under MEDIA_ROOT; rows hold their relative path and sha256, so a
row is the checksum of what is on disk.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Revision
from core.jobs.models import Job, JobStatus  # noqa: F401  (exports and training runs use JobStatus)
from core.models import Batch, Campaign, Institution, Scan, User

BASELINE_LABEL = "baseline"  # model_label of revisions made by the classical baseline


class ModelVersion(models.Model):
    """A trained pre-segmentation model of a campaign: its weights file, metrics and provenance.

    At most one version per campaign is active (a partial unique index); with none active the
    classical baseline pre-segments. Only `model_version_activate` flips `is_active`.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=100)
    architecture = models.CharField(max_length=50)
    file_path = models.CharField(max_length=300)  # relative to MEDIA_ROOT
    sha256 = models.CharField(max_length=64)
    trained_on = models.ForeignKey(
        "DatasetExport", on_delete=models.PROTECT, null=True, blank=True, related_name="model_versions"
    )
    metrics = models.JSONField(default=dict, blank=True)
    # The scan-level classifier trained with the segmenter (a second weights file); blank when
    # the export's training split had fewer than two diagnoses, or for an uploaded segmenter.
    classifier_architecture = models.CharField(max_length=50, blank=True)
    classifier_file_path = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT
    classifier_sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign_id", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign"], condition=Q(is_active=True), name="one_active_model_per_campaign"
            ),
            models.UniqueConstraint(fields=["campaign", "name"], name="uniq_model_version_name"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """What revision 0 and the audit trail name as the author."""
        return f"model-version {self.pk} ({self.name})"


class PresegStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # a task is on its way
    RUNNING = "running", "Running"  # a worker is segmenting it
    DONE = "done", "Done"  # revision 0 stored
    FAILED = "failed", "Failed"  # error text says why; a re-run retries it
    SKIPPED = "skipped", "Skipped"  # people (or an earlier run) already saved labels: never overwritten


PRESEG_FINAL = frozenset({PresegStatus.DONE, PresegStatus.FAILED, PresegStatus.SKIPPED})


class PresegRun(models.Model):
    """Pre-segmentation of one batch; one row per batch, re-runs retry its failed scans."""

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="preseg_run")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    attempts = models.PositiveIntegerField(default=0)  # how often presegment_batch (re)queued it
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Pre-segmentation of batch {self.batch_id}"


class PresegScan(Job):
    """One scan of a pre-segmentation run: its status, the model that ran, and how long it took.

    Its lifecycle is core.jobs'. Running it again is safe (revision 0 is never written over
    people's labels), so a lost worker's scan is re-queued when that worker starts again."""

    run = models.ForeignKey(PresegRun, on_delete=models.CASCADE, related_name="scans")
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=PresegStatus.choices, default=PresegStatus.QUEUED)
    model_label = models.CharField(max_length=150, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revision = models.ForeignKey(Revision, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    seconds = models.FloatField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)

    # A failed scan is retried by a re-run (re-queued) or by its task sent again (claimed).
    job_transitions = {
        PresegStatus.QUEUED: frozenset({PresegStatus.RUNNING, PresegStatus.FAILED}),
        PresegStatus.RUNNING: frozenset(
            {PresegStatus.DONE, PresegStatus.FAILED, PresegStatus.SKIPPED, PresegStatus.QUEUED}
        ),
        PresegStatus.FAILED: frozenset({PresegStatus.QUEUED, PresegStatus.RUNNING}),
        PresegStatus.DONE: frozenset(),
        PresegStatus.SKIPPED: frozenset(),
    }
    job_audit_action = "preseg_scan"
    job_requeue_on_restart = True
    job_task = "modelassist.tasks.presegment_scan"

    class Meta:
        ordering = ["run_id", "pk"]
        constraints = [models.UniqueConstraint(fields=["run", "scan"], name="uniq_preseg_scan")]

    def job_task_args(self) -> tuple:
        run = PresegRun.objects.values("campaign_id", "batch_id").get(pk=self.run_id)
        return (run["campaign_id"], self.scan_id, run["batch_id"])


class Split(models.TextChoices):
    TRAIN = "train", "Training"  # fits the weights
    VALIDATION = "validation", "Validation"  # early stopping only
    TEST = "test", "Test"  # held out: Dice for promotion decisions


# Target shares of the institution-level split (DESIGN step 8: 70/15/15).
SPLIT_SHARES: dict[str, float] = {Split.TRAIN: 0.70, Split.VALIDATION: 0.15, Split.TEST: 0.15}


class SplitMethod(models.TextChoices):
    INSTITUTION = "institution", "By institution"  # three or more institutions: none in two splits
    PATIENT = "patient", "By patient"  # fewer: every scan of a patient in one split


class SplitPlan(models.Model):
    """The stored seed that orders new institutions (or patients) when they are given a split,
    and the split's method, chosen when the campaign's first cases are given a split."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="split_plan")
    seed = models.BigIntegerField()
    method = models.CharField(max_length=12, choices=SplitMethod.choices, blank=True)  # "": not chosen yet
    created_at = models.DateTimeField(auto_now_add=True)


class InstitutionSplit(models.Model):
    """An institution's split in a campaign: set once, never changed (no institution in two splits)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="institution_splits")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    split = models.CharField(max_length=12, choices=Split.choices)
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "institution"], name="uniq_institution_split")
        ]


class ExportCase(models.Model):
    """A scan as a case of a campaign's exports: its case number and split never change."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="export_cases")
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField()  # case_XXXX in every export of the campaign
    split = models.CharField(max_length=12, choices=Split.choices)
    first_export = models.ForeignKey("DatasetExport", on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "scan"], name="uniq_export_case_scan"),
            models.UniqueConstraint(fields=["campaign", "number"], name="uniq_export_case_number"),
        ]

    @property
    def case_id(self) -> str:
        return f"case_{self.number:04d}"


class DatasetExport(Job):
    """One dataset version: the curated revisions of approved batches, frozen on disk.

    The version number is given when the folder is published, so a failed export uses none.
    Its lifecycle is core.jobs' (status is JobStatus; a failure leaves nothing half-written);
    running it again starts over, so a lost worker's export is re-queued.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="exports")
    version = models.PositiveIntegerField(null=True, blank=True)
    path = models.CharField(max_length=300, blank=True)  # relative to MEDIA_ROOT, once published
    content_sha256 = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True)  # cases per split, classes, sizes
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    job_audit_action = "export"
    job_requeue_on_restart = True
    job_task = "modelassist.tasks.export_dataset"

    class Meta:
        ordering = ["campaign_id", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "version"], condition=Q(version__isnull=False), name="uniq_export_version"
            )
        ]

    def __str__(self) -> str:
        return f"Export v{self.version} of {self.campaign_id}" if self.version else f"Export {self.pk}"


class TrainingTrigger(models.TextChoices):
    MANUAL = "manual", "Started by hand"
    SCHEDULE = "schedule", "Schedule"
    APPROVED = "approved", "Newly approved scans"


class TrainingRun(Job):
    """One retraining job: its export, per-epoch history, test metrics and promotion decision.

    Its lifecycle is core.jobs' (status is JobStatus). Running it again starts over, so a lost
    worker's run is re-queued."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="training_runs")
    export = models.ForeignKey(
        DatasetExport, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    trigger = models.CharField(max_length=10, choices=TrainingTrigger.choices, default=TrainingTrigger.MANUAL)
    architecture = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)  # epochs, lr, batch size, seed, max minutes
    history = models.JSONField(default=list, blank=True)  # [{"epoch", "loss", "val_dice", "seconds"}]
    metrics = models.JSONField(default=dict, blank=True)  # candidate and incumbent on the test split
    # Curated scans of the campaign when the run was started: "N newly approved since the last run".
    curated_scans = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    promoted = models.BooleanField(null=True, blank=True)
    decision = models.TextField(blank=True)  # why it was or was not promoted
    requested_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    job_audit_action = "training"
    job_requeue_on_restart = True
    job_task = "modelassist.tasks.train_run"

    class Meta:
        ordering = ["campaign_id", "pk"]

    def __str__(self) -> str:
        return f"Training run {self.pk} of campaign {self.campaign_id}"
