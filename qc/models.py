"""The three-step QC: back-to-back checks, the senior's spot check, batch approval.

Annotation states live in `annotation.models` (one TRANSITIONS table, moved only by
`annotation.services.annotation_transition`). The batch-level state machine lives here, in
BATCH_TRANSITIONS, and is moved only by `qc.services.reviews.batch_review_transition`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from annotation.models import Annotation, Revision
from core.models import Batch, Campaign, User


class Verdict(models.TextChoices):
    PENDING = "pending", "Pending"  # assigned, not yet decided
    PASS = "pass", "Pass"  # the reviewer accepts the revision as it is
    FAIL = "fail", "Fail"  # the reviewer sends it back, with at least one finding


class FindingKind(models.TextChoices):
    MISSED_LESION = "missed_lesion", "Missed lesion"
    BOUNDARY = "boundary", "Boundary"
    WRONG_CLASS = "wrong_class", "Wrong class"
    WRONG_SCAN_LABEL = "wrong_scan_label", "Wrong scan label"  # scan-level; slice/position optional
    OTHER = "other", "Other"


class Slot(models.TextChoices):
    # What the annotator sees instead of a name: checker identities stay hidden from them.
    A = "A", "checker A"
    B = "B", "checker B"


class CheckerPair(models.Model):
    """The two checkers of an annotation, fixed across rounds: step 2 goes back to the same two."""

    annotation = models.OneToOneField(Annotation, on_delete=models.CASCADE, related_name="checker_pair")
    checker_a = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    checker_b = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The back-to-back check needs two different people.
            models.CheckConstraint(condition=~Q(checker_a=F("checker_b")), name="pair_checkers_differ"),
        ]

    def __str__(self) -> str:
        return f"Checkers {self.checker_a_id} and {self.checker_b_id} of annotation {self.annotation_id}"

    def checker_of(self, slot: str) -> int:
        return self.checker_a_id if slot == Slot.A else self.checker_b_id


class Check(models.Model):
    """One checker's verdict on one submitted revision (one of the two checks of a round)."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="checks")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="checks")
    # 1 for the first submission; every resubmission (after a checker's or the senior's fail) +1.
    round = models.PositiveIntegerField()
    slot = models.CharField(max_length=1, choices=Slot.choices)
    checker = models.ForeignKey(User, on_delete=models.PROTECT, related_name="checks")
    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.PENDING)
    findings = models.JSONField(default=list, blank=True)
    assigned_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    time_spent_s = models.FloatField(default=0.0)

    class Meta:
        ordering = ["annotation_id", "round", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["annotation", "round", "slot"], name="uniq_check_slot"),
            # The database itself refuses one person holding both checks of a round.
            models.UniqueConstraint(fields=["annotation", "round", "checker"], name="uniq_check_checker"),
        ]
        indexes = [models.Index(fields=["checker", "verdict"])]

    def __str__(self) -> str:
        return f"Check {self.pk} ({self.slot}, round {self.round}) of annotation {self.annotation_id}"


class BatchReviewState(models.TextChoices):
    ANNOTATING = "annotating", "Annotating"  # scans are being annotated or checked (steps 1–2)
    SPOT_CHECK = "spot_check", "In spot check"  # every scan checked; the senior reads a sample (step 3)
    APPROVED = "approved", "Approved"  # every sampled scan passed; the batch's labels are curated


# The one table of allowed batch moves. Only a data manager's audited reopening leaves APPROVED.
BATCH_TRANSITIONS: dict[str, frozenset[str]] = {
    BatchReviewState.ANNOTATING: frozenset({BatchReviewState.SPOT_CHECK}),
    BatchReviewState.SPOT_CHECK: frozenset({BatchReviewState.APPROVED}),
    BatchReviewState.APPROVED: frozenset({BatchReviewState.SPOT_CHECK}),
}


class BatchReview(models.Model):
    """The QC state of one batch."""

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="review")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")  # denormalised
    state = models.CharField(
        max_length=20, choices=BatchReviewState.choices, default=BatchReviewState.ANNOTATING
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Review of batch {self.batch_id} ({self.state})"

    def current_draw(self) -> SpotCheckDraw | None:
        return self.draws.order_by("-number").first()


class SpotCheckDraw(models.Model):
    """One reproducible draw of the spot-check sample: replay with
    `random.Random(seed).sample(population, sample_size)` (population = sorted scan ids)."""

    review = models.ForeignKey(BatchReview, on_delete=models.CASCADE, related_name="draws")
    number = models.PositiveIntegerField()  # 1 for the first draw; a reopened batch draws again
    seed = models.BigIntegerField()
    share = models.FloatField()
    population = models.JSONField()  # sorted scan ids of the batch at the time of the draw
    sample_size = models.PositiveIntegerField()
    sampled_scan_ids = models.JSONField()  # the random draw, in draw order
    added_scan_ids = models.JSONField(default=list, blank=True)  # named by a data manager on reopening
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["review", "number"], name="uniq_draw_number")]

    def __str__(self) -> str:
        return f"Draw {self.number} of batch review {self.review_id} (seed {self.seed})"

    @property
    def scan_ids(self) -> set[int]:
        return set(self.sampled_scan_ids) | set(self.added_scan_ids)


class SpotCheck(models.Model):
    """The senior's verdict on one sampled scan's checked revision (QC step 3)."""

    review = models.ForeignKey(BatchReview, on_delete=models.CASCADE, related_name="spot_checks")
    draw = models.ForeignKey(SpotCheckDraw, on_delete=models.CASCADE, related_name="spot_checks")
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="spot_checks")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="spot_checks")
    # Null only when no senior of the campaign may read this scan; a data manager assigns one.
    senior = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="spot_checks"
    )
    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.PENDING)
    findings = models.JSONField(default=list, blank=True)
    assigned_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    time_spent_s = models.FloatField(default=0.0)

    class Meta:
        ordering = ["review_id", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["annotation"], condition=Q(verdict="pending"), name="one_pending_spot_check"
            ),
        ]

    def __str__(self) -> str:
        return f"Spot check {self.pk} of annotation {self.annotation_id} ({self.verdict})"


class CuratedRevision(models.Model):
    """The revision an approval made final. Exports read the current (not withdrawn) rows."""

    review = models.ForeignKey(BatchReview, on_delete=models.CASCADE, related_name="curated")
    draw = models.ForeignKey(SpotCheckDraw, on_delete=models.PROTECT, related_name="+")
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="curated_revisions")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="+")
    curated_at = models.DateTimeField()
    approved_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    withdrawn_at = models.DateTimeField(null=True, blank=True)  # set when the batch is reopened
    withdrawn_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotation"],
                condition=Q(withdrawn_at__isnull=True),
                name="one_current_curated_revision",
            ),
        ]

    def __str__(self) -> str:
        return f"Curated revision {self.revision_id} of annotation {self.annotation_id}"
