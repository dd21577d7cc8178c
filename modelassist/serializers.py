"""What the model-assist API answers, for /api/schema/ and the frontend's generated types.

The views build plain dicts (modelassist.selectors, the apis' *_out helpers, the
quantification service); these serializers only describe them, field for field, so that a
changed answer shows up as a changed schema (and a failing `tsc`).
"""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import AnnotationState
from modelassist.models import JobStatus, PresegStatus, SplitMethod, TrainingTrigger

# --- pre-segmentation -----------------------------------------------------------------------

# The batch-level status of modelassist.selectors.preseg_progress.
PRESEG_PROGRESS_STATUSES = ["not_started", "queued", "running", "done", "done_with_failures"]


class PresegScanOut(serializers.Serializer):
    scan_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=PresegStatus.choices)
    model_label = serializers.CharField(allow_blank=True, help_text="who pre-segmented it")
    model_version_id = serializers.IntegerField(allow_null=True, help_text="null: the baseline")
    revision_id = serializers.IntegerField(allow_null=True, help_text="revision 0, once stored")
    error = serializers.CharField(allow_blank=True)
    seconds = serializers.FloatField(allow_null=True)
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class PresegProgressOut(serializers.Serializer):
    batch_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=PRESEG_PROGRESS_STATUSES)
    # attempts, total and progress are absent while not_started (no run yet).
    attempts = serializers.IntegerField(required=False)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="scans per status")
    total = serializers.IntegerField(required=False)
    progress = serializers.FloatField(required=False, help_text="0..1: share of scans finished")
    scans = PresegScanOut(many=True)


# --- model versions -------------------------------------------------------------------------


class ExportRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField(allow_null=True)


class ModelVersionOut(serializers.Serializer):
    """A model version, or the classical baseline (id null, and only the first six fields)."""

    id = serializers.IntegerField(allow_null=True, help_text="null: the classical baseline")
    name = serializers.CharField()
    label = serializers.CharField()
    architecture = serializers.CharField()
    is_active = serializers.BooleanField()
    metrics = serializers.JSONField(
        help_text="test figures (candidate and incumbent Dice, cases per split); {} for the baseline"
    )
    sha256 = serializers.CharField(required=False)
    trained_on = ExportRefOut(required=False, allow_null=True, help_text="the export it learned from")
    curated_scans = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="curated scans of the export it learned from; null when uploaded or federated",
    )
    activated_at = serializers.DateTimeField(required=False, allow_null=True)
    created_by = serializers.CharField(required=False, allow_null=True, help_text="username")
    created_at = serializers.DateTimeField(required=False)


class ModelVersionsOut(serializers.Serializer):
    active = ModelVersionOut(help_text="the active version, or the baseline")
    versions = ModelVersionOut(many=True, help_text="newest first")


# --- reports --------------------------------------------------------------------------------

REGION_KINDS = ["zone", "lobe"]


class SpacingOut(serializers.Serializer):
    x = serializers.FloatField()
    y = serializers.FloatField()
    z = serializers.FloatField()


class ReportLabelsOut(serializers.Serializer):
    selected_by = serializers.ChoiceField(choices=["head", "curated", "revision"])
    revision_id = serializers.IntegerField()
    revision_number = serializers.IntegerField()
    source = serializers.CharField()
    author = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    annotation_state = serializers.ChoiceField(choices=AnnotationState.choices)
    curated = serializers.BooleanField()


class LungsOut(serializers.Serializer):
    method = serializers.CharField()
    from_cache = serializers.BooleanField()


class OtherOpacityByHuOut(serializers.Serializer):
    ground_glass_like_below_minus_350_hu_ml = serializers.FloatField()
    consolidation_like_from_minus_350_hu_ml = serializers.FloatField()


class RegionOut(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=REGION_KINDS)
    lung_volume_ml = serializers.FloatField()
    lesion_volume_ml = serializers.FloatField()
    percent_involved = serializers.FloatField()
    severity_score = serializers.IntegerField(help_text="0..5")


class ReportClassifierOut(serializers.Serializer):
    shown = serializers.BooleanField(help_text="false: withheld or no classifier; reason says why")
    reason = serializers.CharField(required=False)
    model_version = serializers.CharField(required=False)
    probabilities = serializers.DictField(
        child=serializers.FloatField(), required=False, help_text="by the diagnosis choice"
    )
    note = serializers.CharField(required=False)


class ScanReportOut(serializers.Serializer):
    scan_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    patient = serializers.CharField(help_text="pseudonym")
    study_date = serializers.DateField(allow_null=True)
    spacing_mm = SpacingOut()
    labels = ReportLabelsOut(help_text="the revision the report reads")
    lungs = LungsOut()
    voxel_volume_ml = serializers.FloatField()
    lung_volume_ml = serializers.FloatField()
    lesion_volume_ml = serializers.FloatField()
    percent_of_lung_involved = serializers.FloatField()
    lesion_volume_by_class_ml = serializers.DictField(
        child=serializers.FloatField(), help_text="by the label schema's class name"
    )
    other_opacity_by_hu_ml = OtherOpacityByHuOut(
        allow_null=True, help_text="null when the label schema has no 'other' class"
    )
    region_kind = serializers.ChoiceField(choices=REGION_KINDS)
    region_note = serializers.CharField()
    regions = RegionOut(many=True)
    severity_score_total = serializers.IntegerField()
    severity_score_max = serializers.IntegerField()
    severity_bands = serializers.CharField()
    classifier = ReportClassifierOut(
        required=False, help_text="the active classifier's probabilities (scan reports only)"
    )


class PatientScanOut(serializers.Serializer):
    scan_id = serializers.IntegerField()
    study_date = serializers.DateField(allow_null=True)
    report = ScanReportOut(allow_null=True, help_text="of the head revision; null when no labels yet")
    reason = serializers.CharField(allow_blank=True, help_text="why there is no report")


class InvolvementPointOut(serializers.Serializer):
    study_date = serializers.DateField(allow_null=True)
    scan_id = serializers.IntegerField()
    percent_of_lung_involved = serializers.FloatField()
    lesion_volume_ml = serializers.FloatField()
    severity_score_total = serializers.IntegerField()


class PatientReportsOut(serializers.Serializer):
    patient = serializers.CharField()
    campaign_id = serializers.IntegerField()
    scans = PatientScanOut(many=True, help_text="oldest study first")
    percent_of_lung_involved_over_time = InvolvementPointOut(many=True)


# --- exports --------------------------------------------------------------------------------


class ExportSummaryOut(serializers.Serializer):
    """Empty ({}) until the export is published."""

    cases = serializers.IntegerField(required=False)
    splits = serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text="cases per split"
    )
    split_method = serializers.ChoiceField(choices=SplitMethod.choices, required=False)
    tested_on = serializers.CharField(required=False, help_text="what the test split means, said plainly")
    institutions = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="by institution: institution → its split"
    )
    patients = serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text="by patient: patients per split"
    )
    bytes = serializers.IntegerField(required=False, help_text="the files' size unpacked")
    archive_bytes = serializers.IntegerField(required=False, help_text="the download's (zip) size")


class DatasetExportOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField()
    version = serializers.IntegerField(allow_null=True, help_text="given when published")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.FloatField(help_text="0..1")
    message = serializers.CharField(allow_blank=True)
    path = serializers.CharField(allow_blank=True)
    content_sha256 = serializers.CharField(allow_blank=True)
    summary = ExportSummaryOut()
    archive_bytes = serializers.IntegerField(
        allow_null=True, help_text="the download's (zip) size; null until it is counted after publishing"
    )
    error = serializers.CharField(allow_blank=True)
    created_by = serializers.CharField(allow_null=True, help_text="username")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.CharField(allow_null=True, help_text="once done")


# --- training -------------------------------------------------------------------------------


class EpochOut(serializers.Serializer):
    epoch = serializers.IntegerField()
    loss = serializers.FloatField(allow_null=True)
    val_dice = serializers.FloatField(allow_null=True)
    seconds = serializers.FloatField()


class TrainingRunOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    trigger = serializers.ChoiceField(choices=TrainingTrigger.choices)
    progress = serializers.FloatField(help_text="0..1")
    message = serializers.CharField(allow_blank=True)
    architecture = serializers.CharField()
    params = serializers.DictField(child=serializers.FloatField(), help_text="epochs, lr, batch size, seed…")
    export = ExportRefOut(allow_null=True)
    metrics = serializers.JSONField(help_text="candidate and incumbent on the test split, once evaluated")
    model_version = ModelVersionOut(allow_null=True, help_text="the version it registered")
    promoted = serializers.BooleanField(allow_null=True)
    decision = serializers.CharField(allow_blank=True, help_text="why it was or was not promoted")
    error = serializers.CharField(allow_blank=True)
    requested_by = serializers.CharField(allow_null=True, help_text="username")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class TrainingRunDetailOut(TrainingRunOut):
    history = EpochOut(many=True, help_text="per epoch: poll it to chart live")
