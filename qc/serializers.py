"""What the QC API answers, for /api/schema/ and the frontend's generated types.

The views build plain dicts (qc.selectors, qc.metrics); these serializers only describe them,
field for field, so that a changed answer shows up as a changed schema (and a failing `tsc`).
"""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import AnnotationState
from core.models import Batch
from qc.models import BatchReviewState, FindingKind, Slot, Verdict

# --- parts ----------------------------------------------------------------------------------


class CampaignRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()


class FindingOut(serializers.Serializer):
    """As qc.services.rules.clean_findings stores it."""

    slice = serializers.IntegerField(allow_null=True, help_text="z index; null only for a wrong scan label")
    position = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        allow_null=True,
        help_text="[x, y] in pixels; null only for a wrong scan label",
    )
    kind = serializers.ChoiceField(choices=FindingKind.choices)
    text = serializers.CharField(allow_blank=True)


class RevisionRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()


class ReviewOut(serializers.Serializer):
    """One check of a closed round, by slot ("checker A"/"checker B"), never by name."""

    slot = serializers.ChoiceField(choices=Slot.choices)
    label = serializers.CharField(help_text='"checker A" or "checker B"')
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    findings = FindingOut(many=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class CheckRoundOut(serializers.Serializer):
    round = serializers.IntegerField()
    revision_id = serializers.IntegerField()
    checks = ReviewOut(many=True)


# --- submit ---------------------------------------------------------------------------------


class SubmitOut(serializers.Serializer):
    annotation_id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=AnnotationState.choices)
    revision_id = serializers.IntegerField()
    round = serializers.IntegerField(help_text="1 for the first submission, +1 for each resubmission")


# --- checks ---------------------------------------------------------------------------------


class CheckQueueItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = CampaignRefOut()
    scan_id = serializers.IntegerField()
    annotation_id = serializers.IntegerField()
    revision = RevisionRefOut()
    round = serializers.IntegerField()
    slot = serializers.ChoiceField(choices=Slot.choices)
    assigned_at = serializers.DateTimeField()


class CheckRevisionOut(RevisionRefOut):
    scan_labels = serializers.DictField(child=serializers.CharField())
    voxel_counts = serializers.DictField(child=serializers.IntegerField(), help_text="voxels per class value")


class CheckDetailOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = CampaignRefOut()
    scan_id = serializers.IntegerField()
    annotation_id = serializers.IntegerField()
    annotation_state = serializers.ChoiceField(choices=AnnotationState.choices)
    revision = CheckRevisionOut()
    round = serializers.IntegerField()
    slot = serializers.ChoiceField(choices=Slot.choices)
    mine = serializers.BooleanField(help_text="whether the viewer is this check's checker")
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    findings = FindingOut(many=True)
    assigned_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    time_spent_s = serializers.FloatField()
    other = ReviewOut(allow_null=True, help_text="the other check of the round: null until both are in")
    history = CheckRoundOut(many=True, help_text="earlier (closed) rounds of the annotation")


class CheckReassignOut(serializers.Serializer):
    id = serializers.IntegerField()
    slot = serializers.ChoiceField(choices=Slot.choices)
    round = serializers.IntegerField()
    checker = serializers.CharField(help_text="username")
    checker_id = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=Verdict.choices)


# --- spot checks ----------------------------------------------------------------------------


class BatchRefOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SpotCheckRevisionOut(RevisionRefOut):
    scan_labels = serializers.DictField(child=serializers.CharField())


class SpotCheckDetailOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = CampaignRefOut()
    batch = BatchRefOut()
    scan_id = serializers.IntegerField()
    annotation_id = serializers.IntegerField()
    annotation_state = serializers.ChoiceField(choices=AnnotationState.choices)
    revision = SpotCheckRevisionOut()
    draw = serializers.IntegerField(help_text="number of the draw that sampled the scan")
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    findings = FindingOut(many=True)
    assigned_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    time_spent_s = serializers.FloatField()
    check_rounds = CheckRoundOut(many=True, help_text="the decided checks of the annotation, by round")


class SpotCheckReassignOut(serializers.Serializer):
    id = serializers.IntegerField()
    senior = serializers.CharField(help_text="username")
    senior_id = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=Verdict.choices)


# --- the annotator's findings ---------------------------------------------------------------


FINDINGS_SOURCES = ["checks", "spot_check"]  # the two checks of a failed round, or a failed spot check


class AnnotatorReviewOut(serializers.Serializer):
    reviewer = serializers.CharField(help_text='"checker A", "checker B" or "senior": never a name')
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    findings = FindingOut(many=True)
    decided_at = serializers.DateTimeField(allow_null=True)


class AnnotatorFindingsOut(serializers.Serializer):
    annotation_id = serializers.IntegerField(allow_null=True)
    state = serializers.ChoiceField(choices=AnnotationState.choices)
    source = serializers.ChoiceField(
        choices=FINDINGS_SOURCES, allow_null=True, help_text="null: no failed review yet"
    )
    round = serializers.IntegerField(allow_null=True)
    revision_id = serializers.IntegerField(allow_null=True)
    reviews = AnnotatorReviewOut(many=True)


# --- the batch board ------------------------------------------------------------------------

BOARD_VERDICTS = [*Verdict.values, "hidden"]  # "hidden": a verdict of a round the viewer is blind to


class BoardCheckOut(serializers.Serializer):
    slot = serializers.ChoiceField(choices=Slot.choices)
    checker = serializers.CharField(help_text="username")
    verdict = serializers.ChoiceField(choices=BOARD_VERDICTS)


class BoardSpotCheckOut(serializers.Serializer):
    id = serializers.IntegerField()
    senior = serializers.CharField(allow_null=True, help_text="username; null until one is assigned")
    verdict = serializers.ChoiceField(choices=Verdict.choices)


HOLDER_ROLES = ["annotator", "checker", "senior"]  # who must act on the scan next


class BoardHolderOut(serializers.Serializer):
    role = serializers.ChoiceField(choices=HOLDER_ROLES, allow_null=True, help_text="null: nobody holds it")
    users = serializers.ListField(child=serializers.CharField(), help_text="usernames")


class BoardItemOut(serializers.Serializer):
    scan_id = serializers.IntegerField()
    position = serializers.IntegerField()
    annotation_id = serializers.IntegerField(allow_null=True)
    state = serializers.ChoiceField(choices=AnnotationState.choices)
    head_revision_id = serializers.IntegerField(allow_null=True)
    round = serializers.IntegerField(help_text="the latest round; 0 before the first submission")
    checkers = serializers.ListField(child=serializers.CharField(), help_text="usernames of the pair")
    checks = BoardCheckOut(many=True, help_text="the checks of the latest round")
    sampled = serializers.BooleanField(help_text="in the current spot-check draw")
    spot_check = BoardSpotCheckOut(allow_null=True)
    holder = BoardHolderOut()


class BoardBatchOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    campaign_id = serializers.IntegerField()
    annotator = serializers.CharField(allow_blank=True, help_text="username; empty when unassigned")


class BoardDrawOut(serializers.Serializer):
    number = serializers.IntegerField()
    seed = serializers.CharField(help_text="a 64-bit integer, as a string")
    share = serializers.FloatField()
    sample_size = serializers.IntegerField()
    sampled_scan_ids = serializers.ListField(child=serializers.IntegerField())
    added_scan_ids = serializers.ListField(child=serializers.IntegerField())


class BoardReviewOut(serializers.Serializer):
    state = serializers.ChoiceField(choices=BatchReviewState.choices)
    approved_at = serializers.DateTimeField(allow_null=True)
    draw = BoardDrawOut(allow_null=True, help_text="the current draw; null before the spot check")


class BatchBoardOut(serializers.Serializer):
    batch = BoardBatchOut()
    review = BoardReviewOut()
    items = BoardItemOut(many=True)


# --- QC figures (qc.metrics) ----------------------------------------------------------------


class RateOut(serializers.Serializer):
    passed = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="0..1; null when nothing was judged")


class FirstPassOut(RateOut):
    annotations = serializers.IntegerField()


class RoundsUntilPassOut(serializers.Serializer):
    annotations = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    distribution = serializers.DictField(
        child=serializers.IntegerField(), help_text="annotations by the round they passed in"
    )


class AgreementOut(serializers.Serializer):
    pairs = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True, help_text="share of pairs that agree")
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null when undefined")
    kappa_reason = serializers.CharField(
        allow_blank=True, help_text='why kappa is undefined, e.g. "checker B passed every scan"; else ""'
    )
    pass_share = serializers.FloatField(allow_null=True, help_text="share of pass among all verdicts")


class Step3Out(RateOut):
    spot_checks = serializers.IntegerField()


class DiceOut(serializers.Serializer):
    pairs = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)


class RoleTimeOut(serializers.Serializer):
    scans = serializers.IntegerField()
    total_s = serializers.FloatField()
    mean_s_per_scan = serializers.FloatField(allow_null=True)


class TimePerScanOut(serializers.Serializer):
    annotator = RoleTimeOut()
    checker = RoleTimeOut()
    senior = RoleTimeOut()


class FiguresOut(serializers.Serializer):
    scans = serializers.IntegerField()
    first_pass = FirstPassOut()
    rounds_until_pass = RoundsUntilPassOut()
    checker_agreement = AgreementOut()
    step3 = Step3Out()
    dice_consecutive_revisions = DiceOut()
    time_per_scan = TimePerScanOut()


class BatchFiguresOut(FiguresOut):
    batch_id = serializers.IntegerField()
    name = serializers.CharField()
    review_state = serializers.ChoiceField(choices=BatchReviewState.choices)


class AnnotatorFiguresOut(FiguresOut):
    user_id = serializers.IntegerField()
    username = serializers.CharField(allow_blank=True)


class CheckerTimeOut(serializers.Serializer):
    total_s = serializers.FloatField()
    mean_s_per_check = serializers.FloatField(allow_null=True)


class CheckerFiguresOut(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(allow_blank=True)
    checks = serializers.IntegerField()
    passed = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True)
    agreement_with_partner = AgreementOut()
    time = CheckerTimeOut()


class QcMetricsOut(serializers.Serializer):
    campaign = serializers.IntegerField()
    batch = serializers.IntegerField(allow_null=True)
    overall = FiguresOut()
    by_batch = BatchFiguresOut(many=True)
    by_annotator = AnnotatorFiguresOut(many=True)
    by_checker = CheckerFiguresOut(many=True)
