"""Every write of annotations: saving revisions (people and models) and state moves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import transaction

from annotation import label_codec, storage
from annotation.models import (
    EDITABLE_STATES,
    TRANSITIONS,
    Annotation,
    AnnotationState,
    Revision,
    RevisionSource,
)
from annotation.permissions import require_annotator
from core.api_errors import Conflict, DomainError, NotFound
from core.label_schema import class_values, validate_scan_labels
from core.models import Campaign, CampaignScan, Scan, User
from core.services.audit import audit_record


@dataclass
class Box:
    offset: tuple[int, int, int]
    data: np.ndarray  # uint8 (d, h, w)


class IllegalTransition(DomainError):
    status_code = 409
    code = "illegal_transition"


def annotation_get_or_create(campaign: Campaign, scan: Scan) -> Annotation:
    if not CampaignScan.objects.filter(campaign=campaign, scan=scan).exists():
        raise NotFound("this scan is not part of the campaign")
    annotation, _ = Annotation.objects.get_or_create(campaign=campaign, scan=scan)
    return annotation


def annotation_transition(
    annotation: Annotation, to: str, *, actor: User | None, revision: Revision | None = None, **details
) -> None:
    """The only place an annotation's state changes. Call inside the caller's transaction,
    on a row the caller has locked."""
    current = annotation.state
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"an annotation that is {AnnotationState(current).label.lower()} cannot become "
            f"{AnnotationState(to).label.lower()}"
        )
    updated = Annotation.objects.filter(pk=annotation.pk, state=current).update(state=to)
    if updated != 1:  # compare-and-swap: someone moved it first
        raise Conflict("the annotation changed state meanwhile; reload and try again", code="state_changed")
    annotation.state = to
    audit_record(
        actor=actor,
        action="annotation_state",
        obj=annotation,
        from_state=current,
        to_state=to,
        campaign=annotation.campaign_id,
        scan=annotation.scan_id,
        revision_id=revision.pk if revision else annotation.head_id,
        **details,
    )


def head_labels(annotation: Annotation) -> np.ndarray:
    shape = annotation.scan.shape
    if annotation.head is None:  # no query when head_id is None
        return np.zeros(shape, dtype=np.uint8)
    return storage.load_labels(annotation.head.label_sha256, shape)


def revision_labels(revision: Revision) -> np.ndarray:
    return storage.load_labels(revision.label_sha256, revision.annotation.scan.shape)


def revision_save(
    *,
    actor: User,
    campaign: Campaign,
    scan: Scan,
    parent_id: int | None,
    boxes: list[Box] | None = None,
    full: np.ndarray | None = None,
    scan_labels: dict | None = None,
    time_spent_s: float = 0.0,
) -> Revision:
    """A person's save: a new immutable revision on top of `parent_id`, which must be the head."""
    require_annotator(actor, campaign, scan.pk)
    try:
        labels = validate_scan_labels(campaign.label_schema, scan_labels, require_complete=False)
    except ValueError as exc:
        raise DomainError(str(exc), code="bad_scan_labels") from exc
    if time_spent_s < 0 or time_spent_s > 24 * 3600:
        raise DomainError("time_spent_s must be between 0 and 86400 seconds")
    with transaction.atomic():
        annotation = _annotation_locked(campaign, scan)
        _check_parent(annotation, parent_id)
        if annotation.state not in EDITABLE_STATES:
            raise Conflict(
                f"the scan is {AnnotationState(annotation.state).label.lower()}; it cannot be edited now",
                code="not_editable",
            )
        volume, counts = _apply_edits(annotation, campaign, boxes, full)
        revision = _create_revision(
            annotation,
            volume,
            counts,
            source=RevisionSource.HUMAN,
            author=actor,
            scan_labels=labels,
            time_spent_s=time_spent_s,
        )
        if annotation.state == AnnotationState.NOT_STARTED:
            annotation_transition(annotation, AnnotationState.IN_PROGRESS, actor=actor, revision=revision)
    return revision


def model_revision_save(
    *, campaign: Campaign, scan: Scan, volume: np.ndarray, model_label: str, model_version_id: int | None
) -> Revision | None:
    """Pre-segmentation as revision 0. Never on top of people's work: returns None if any exists."""
    annotation = annotation_get_or_create(campaign, scan)
    with transaction.atomic():
        annotation = (
            Annotation.objects.select_for_update(of=("self",)).select_related("scan").get(pk=annotation.pk)
        )
        if annotation.revisions.exists():
            return None
        _check_volume(volume, scan, campaign)
        return _create_revision(
            annotation,
            volume,
            label_codec.voxel_counts(volume),
            source=RevisionSource.MODEL,
            model_label=model_label,
            model_version_id=model_version_id,
            scan_labels={},
        )


def stale_revision_conflict(
    annotation: Annotation, edited_revision_id: int | None, detail: str, *, code: str
) -> Conflict:
    """The one 409 of a stale save, submit or verdict: what changed since the client loaded it
    (the current head: id, number, author, when) and the revision the client worked on."""
    head = annotation.head
    return Conflict(
        detail,
        code=code,
        head=None
        if head is None
        else {
            "id": head.pk,
            "number": head.number,
            "author": head.author_display,
            "created_at": head.created_at.isoformat(),
        },
        edited_revision_id=edited_revision_id,
    )


def _annotation_locked(campaign: Campaign, scan: Scan) -> Annotation:
    """The scan's annotation, row-locked, with its head and scan; created on the first save.

    Every save but a scan's first finds the row at once: one query under load instead of three
    (each a round trip that waits for the database's share of the CPU, issue #16 §1).
    """
    locked = Annotation.objects.select_for_update(of=("self",)).select_related("head", "scan")
    annotation = locked.filter(campaign=campaign, scan=scan).first()
    if annotation is None:
        annotation = locked.get(pk=annotation_get_or_create(campaign, scan).pk)
    return annotation


def _check_parent(annotation: Annotation, parent_id: int | None) -> None:
    if annotation.head_id != parent_id:
        raise stale_revision_conflict(
            annotation,
            parent_id,
            "this scan was saved since you loaded it (stale revision); reload to see the latest labels",
            code="stale_parent",
        )


def _apply_edits(
    annotation: Annotation, campaign: Campaign, boxes: list[Box] | None, full: np.ndarray | None
) -> tuple[np.ndarray, dict[int, int]]:
    """The new volume and its voxel counts. Box edits touch only their boxes: counts are
    updated from the parent's, and classes are checked where something changed."""
    scan = annotation.scan
    if full is not None:
        _check_volume(full, scan, campaign)
        return full, label_codec.voxel_counts(full)
    head = annotation.head
    if head is None:
        volume = np.zeros(scan.shape, dtype=np.uint8)
        counts = np.zeros(256, dtype=np.int64)
    else:
        volume = storage.take_labels(head.label_sha256, scan.shape)
        counts = np.zeros(256, dtype=np.int64)
        for value, n in head.voxel_counts.items():
            counts[int(value)] = n
    allowed = class_values(campaign.label_schema) | {0}
    for box in boxes or []:
        try:
            region = label_codec.validate_box(scan.shape, box.offset, box.data.shape)
            label_codec.check_classes(box.data, allowed)
        except label_codec.LabelPayloadError as exc:
            raise DomainError(str(exc), code="bad_box") from exc
        counts -= np.bincount(volume[region].ravel(), minlength=256)
        counts += np.bincount(box.data.ravel(), minlength=256)
        volume[region] = box.data
    return volume, {int(v): int(n) for v, n in enumerate(counts) if v and n}


def _check_volume(volume: np.ndarray, scan: Scan, campaign: Campaign) -> None:
    if volume.shape != scan.shape:
        raise DomainError(
            f"label volume of shape {list(volume.shape)} does not match the scan's {list(scan.shape)} "
            "(slices, rows, columns)",
            code="bad_shape",
        )
    if volume.dtype != np.uint8:
        raise DomainError("label volumes are uint8", code="bad_dtype")
    try:
        label_codec.check_classes(volume, class_values(campaign.label_schema) | {0})
    except label_codec.LabelPayloadError as exc:
        raise DomainError(str(exc), code="bad_class") from exc


def _create_revision(
    annotation: Annotation, volume: np.ndarray, counts: dict[int, int], **fields
) -> Revision:
    sha = storage.store_labels(volume)
    last = annotation.revisions.order_by("-number").values_list("number", flat=True).first()
    revision = Revision.objects.create(
        annotation=annotation,
        number=0 if last is None else last + 1,
        parent_id=annotation.head_id,
        label_sha256=sha,
        voxel_counts={str(k): v for k, v in sorted(counts.items())},
        **fields,
    )
    Annotation.objects.filter(pk=annotation.pk).update(head=revision)
    annotation.head = revision
    audit_record(
        actor=fields.get("author"),
        actor_label=fields.get("model_label", ""),
        action="revision_save",
        obj=revision,
        campaign=annotation.campaign_id,
        scan=annotation.scan_id,
        revision_id=revision.pk,
        number=revision.number,
        source=revision.source,
    )
    return revision
