"""Core domain: institutions, people and roles, campaigns, studies and scans, batches, audit."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.label_schema import validate_label_schema


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"  # segments the scans of their batches
    CHECKER = "checker", "Checker"  # checks others' annotations, blind to the other checker
    SENIOR = "senior", "Senior radiologist"  # spot-checks a share of every checked batch
    DATA_MANAGER = "data_manager", "Data manager"  # imports, batches, exports, trains


class Institution(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    # Calling AE titles this institution's PACS may send from (C-STORE receiver).
    allowed_ae_titles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # The slug keys the institution's pseudonyms, date offsets and stored UIDs
        # (imaging.ingest.store): renamed, a returning patient would get a second pseudonym, and
        # the patient-level split could put the two in train and test.
        update_fields = kwargs.get("update_fields")
        if self.pk is not None and (update_fields is None or "slug" in update_fields):
            stored = Institution.objects.filter(pk=self.pk).values_list("slug", flat=True).first()
            if stored is not None and stored != self.slug:
                raise ValidationError(
                    {
                        "slug": f"an institution's slug is fixed once it exists (it stays {stored!r}): "
                        "its patients' pseudonyms derive from it; change the name instead"
                    }
                )
        super().save(*args, **kwargs)


class User(AbstractUser):
    institutions = models.ManyToManyField(Institution, through="Membership", related_name="users")


class Membership(models.Model):
    """A user's role at an institution. One row per (user, institution, role)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "institution", "role"], name="uniq_membership")
        ]


class Campaign(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="campaigns")
    # Other institutions whose members may take part (their data stays theirs otherwise).
    shared_with = models.ManyToManyField(Institution, blank=True, related_name="shared_campaigns")
    label_schema = models.JSONField()
    batch_size = models.PositiveIntegerField(default=50)
    checkers_per_annotation = models.PositiveIntegerField(default=2)
    spot_check_share = models.FloatField(default=0.30)
    # Retrain when this many scans were approved since the last training run (0: never).
    retrain_after_approved = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # The schema is an invariant every label volume is checked against: never store a bad one.
        self.full_clean(exclude=["shared_with"])
        super().save(*args, **kwargs)

    def clean(self) -> None:
        try:
            validate_label_schema(self.label_schema)
        except ValueError as exc:
            raise ValidationError({"label_schema": str(exc)}) from exc
        if not 0 < self.spot_check_share <= 1:
            raise ValidationError({"spot_check_share": "must be in (0, 1]"})
        if not 1 <= self.batch_size <= 500:
            raise ValidationError({"batch_size": "must be between 1 and 500"})
        if self.checkers_per_annotation != 2:
            raise ValidationError({"checkers_per_annotation": "the back-to-back check needs exactly 2"})


class CampaignMember(models.Model):
    """A user's role in a campaign; workflow roles are granted per campaign."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="campaign_roles")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user", "role"], name="uniq_campaign_member")
        ]


class PatientPseudonym(models.Model):
    """Re-identification table: the only place original patient identity is kept.

    Kept apart from Study/Scan so that everything else the platform stores, serves and
    exports is pseudonymised. Only data managers of the institution may read it.
    """

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="pseudonyms")
    original_id_hash = models.CharField(max_length=64)
    original_patient_id = models.CharField(max_length=128, blank=True)
    original_patient_name = models.CharField(max_length=256, blank=True)
    pseudonym = models.CharField(max_length=32, unique=True)
    date_offset_days = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["institution", "original_id_hash"], name="uniq_patient_per_inst")
        ]


class Study(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(PatientPseudonym, on_delete=models.PROTECT, related_name="studies")
    study_uid = models.CharField(max_length=64, unique=True)  # pseudonymised
    study_date = models.DateField(null=True, blank=True)  # shifted
    description = models.CharField(max_length=200, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.patient.pseudonym} {self.study_date or ''}".strip()


class Scan(models.Model):
    """One CT series of a study: the unit of work. Geometry is of the sorted volume."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="scans")
    series_uid = models.CharField(max_length=64, unique=True)  # pseudonymised
    description = models.CharField(max_length=200, blank=True)
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    slices = models.PositiveIntegerField()
    # (x, y, z) in mm: column spacing, row spacing, distance between slice centres.
    spacing = models.JSONField()
    origin = models.JSONField()  # patient position of the first voxel, mm
    direction = models.JSONField()  # 3x3 row-major: column, row and slice directions
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    # Slice gaps of a series the data manager imported anyway (a complete series has none).
    gaps = models.JSONField(default=list, blank=True)
    # With gaps: each slice's distance from the first along the slice direction (mm), as the
    # uniform spacing[2] cannot place them. Empty for a regular series.
    slice_positions = models.JSONField(default=list, blank=True)
    storage_dir = models.CharField(max_length=300)  # relative to MEDIA_ROOT
    volume_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Scan {self.pk} ({self.slices}×{self.rows}×{self.columns})"

    @property
    def institution_id(self) -> int:
        return self.study.institution_id

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns): the index order of the volume cache and label volumes."""
        return (self.slices, self.rows, self.columns)


class Instance(models.Model):
    """One stored, pseudonymised DICOM file of a scan; index is its place in the volume."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="instances")
    sop_uid = models.CharField(max_length=64, unique=True)
    index = models.PositiveIntegerField()
    file_name = models.CharField(max_length=100)
    source_sha256 = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["scan", "index"], name="uniq_instance_index")]


class CampaignScan(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="campaign_scans")
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="campaign_scans")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "scan"], name="uniq_campaign_scan")]


class Batch(models.Model):
    """Up to the campaign's batch size of scans given to one annotator."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"  # being worked on (annotation or QC)
        CLOSED = "closed", "Closed"  # finished or withdrawn; its scans may be batched again

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="batches")
    name = models.CharField(max_length=100)
    annotator = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="batches")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class BatchItem(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    scan = models.ForeignKey(Scan, on_delete=models.PROTECT, related_name="batch_items")
    # Denormalised from the batch so the database itself can forbid a scan in two open batches.
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="+")
    is_open = models.BooleanField(default=True)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["batch_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "scan"], condition=Q(is_open=True), name="scan_in_one_open_batch"
            ),
            models.UniqueConstraint(fields=["batch", "scan"], name="uniq_batch_scan"),
        ]


class AuditEvent(models.Model):
    """Who did what, when, from which state to which. Written by every state-changing service."""

    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_label = models.CharField(max_length=150, blank=True)  # e.g. a model version for revision 0
    action = models.CharField(max_length=60)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=40)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, null=True, related_name="+")
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, null=True, related_name="+")
    from_state = models.CharField(max_length=40, blank=True)
    to_state = models.CharField(max_length=40, blank=True)
    revision_id = models.BigIntegerField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
