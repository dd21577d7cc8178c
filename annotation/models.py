"""Annotations of scans, made of immutable revisions; the annotation state machine."""

from __future__ import annotations

from django.db import models

from core.models import Campaign, Scan, User


class AnnotationState(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"  # no human revision yet (a model's may exist)
    IN_PROGRESS = "in_progress", "In progress"  # the annotator has saved, not submitted
    SUBMITTED = "submitted", "In check"  # a revision waits for the two checkers (QC steps 1–2)
    NEEDS_REVISION = "needs_revision", "Needs revision"  # a checker or the senior failed it
    CHECKED = "checked", "Checked"  # both checkers passed the head revision
    SPOT_CHECK = "spot_check", "In spot check"  # drawn for the senior's spot check (QC step 3)
    CURATED = "curated", "Curated"  # its batch was approved; the head revision is final


# The one table of allowed moves. Who may make a move, and when, is QC's business (qc/);
# this table only says which moves exist, so no code path can invent another.
TRANSITIONS: dict[str, frozenset[str]] = {
    AnnotationState.NOT_STARTED: frozenset({AnnotationState.IN_PROGRESS, AnnotationState.SUBMITTED}),
    AnnotationState.IN_PROGRESS: frozenset({AnnotationState.SUBMITTED}),
    AnnotationState.SUBMITTED: frozenset({AnnotationState.CHECKED, AnnotationState.NEEDS_REVISION}),
    AnnotationState.NEEDS_REVISION: frozenset({AnnotationState.SUBMITTED}),
    AnnotationState.CHECKED: frozenset({AnnotationState.SPOT_CHECK, AnnotationState.CURATED}),
    AnnotationState.SPOT_CHECK: frozenset({AnnotationState.CURATED, AnnotationState.NEEDS_REVISION}),
    # Only a data manager's audited reopening of an approved batch leaves CURATED.
    AnnotationState.CURATED: frozenset({AnnotationState.CHECKED}),
}

# States in which the annotator may save new revisions.
EDITABLE_STATES = frozenset(
    {AnnotationState.NOT_STARTED, AnnotationState.IN_PROGRESS, AnnotationState.NEEDS_REVISION}
)


class Annotation(models.Model):
    """The label of one scan in one campaign. Its history is its revisions; `head` is the latest."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="annotations")
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="annotations")
    state = models.CharField(
        max_length=20, choices=AnnotationState.choices, default=AnnotationState.NOT_STARTED
    )
    head = models.ForeignKey("Revision", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "scan"], name="uniq_annotation")]

    def __str__(self) -> str:
        return f"Annotation {self.pk} of scan {self.scan_id}"


class RevisionSource(models.TextChoices):
    HUMAN = "human", "Person"
    MODEL = "model", "Model"  # pre-segmentation; revision 0, authored by a model version


class ImmutableRevision(Exception):
    pass


class Revision(models.Model):
    """One immutable save of an annotation: a content-addressed label volume plus scan labels."""

    annotation = models.ForeignKey(Annotation, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    source = models.CharField(max_length=10, choices=RevisionSource.choices, default=RevisionSource.HUMAN)
    author = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="revisions"
    )
    model_label = models.CharField(max_length=100, blank=True)  # e.g. "baseline" or "model-version 3"
    model_version_id = models.BigIntegerField(null=True, blank=True)
    label_sha256 = models.CharField(max_length=64)
    voxel_counts = models.JSONField(default=dict)  # {"1": n, "2": n} of non-zero classes
    scan_labels = models.JSONField(default=dict)
    time_spent_s = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["annotation_id", "number"]
        constraints = [models.UniqueConstraint(fields=["annotation", "number"], name="uniq_revision_number")]

    def save(self, *args, **kwargs) -> None:
        # Revisions are the audit trail of labels: once written, never changed.
        if self.pk is not None:
            raise ImmutableRevision("revisions are immutable; save a new revision instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRevision("revisions are never deleted")

    @property
    def etag(self) -> str:
        return f'"rev-{self.pk}"'

    @property
    def author_display(self) -> str:
        if self.source == RevisionSource.MODEL:
            return self.model_label or "model"
        return self.author.username if self.author else ""
