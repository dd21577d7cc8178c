"""Send curated labels back to the hospital: a scan's curated revision as DICOM SEG, re-identified
(the hospital's own study/series/instance UIDs and patient), by STOW-RS or C-STORE to the
institution's PACS.

The SEG is coded like the dataset export's (modelassist.services.export_files): BINARY, category
"Morphologically Altered Structure", one local code per class, lung as anatomic region. Unlike
the export, every class of the schema is a segment, present or not: "checked, no consolidation"
is a finding the hospital should receive too (and a SEG needs at least one segment).

Lives above QC because it reads curated revisions; the core queues sends (PacsSend rows, from
the API) and starts `send_run` by name. After approval, `send_approved_sweep` (periodic) or
`send_batch` (per approved batch) queue sends for PACS configured with `send_on_approval`.
"""

from __future__ import annotations

import logging

import highdicom as hd
import numpy as np
from celery import shared_task

from annotation import storage
from core.jobs.services import job_claim, job_fail, job_finish, reason_of
from core.models import Scan
from modelassist.services.export_files import LOCAL_SCHEME, LUNG, SEG_CATEGORY, stable_uid
from pacs import remote as pacs
from pacs import services
from pacs.models import PacsSend, RemotePacs, SeriesOrigin
from pacs.reidentify import OriginUnknown, original_sources
from qc.models import CuratedRevision
from qc.selectors import curated_revisions

logger = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 901  # the export's SEG series is 900


class SegError(ValueError):
    pass


def build_seg(
    sources: list,
    labels: np.ndarray,
    classes: list[dict],
    *,
    sop_uid: str,
    series_uid: str,
    content_description: str = "",
) -> hd.seg.Segmentation:
    """One BINARY SEG of the label volume (z, y, x) over `sources` (in volume order)."""
    if labels.shape[0] != len(sources):
        raise SegError(f"{labels.shape[0]} label slices for {len(sources)} source images")
    ordered = sorted(classes, key=lambda c: int(c["value"]))
    table = np.zeros(256, dtype=np.uint8)
    for number, cls in enumerate(ordered, start=1):
        table[int(cls["value"])] = number
    unknown = sorted(set(np.unique(labels).tolist()) - {0} - {int(c["value"]) for c in ordered})
    if unknown:
        raise SegError(f"label values {unknown} are not classes of the campaign's schema")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(cls["name"])[:64],
            segmented_property_category=SEG_CATEGORY,
            segmented_property_type=hd.sr.CodedConcept(
                f"C{cls['value']}", LOCAL_SCHEME, str(cls["name"])[:64]
            ),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_id=f"class {cls['value']}",
            tracking_uid=stable_uid("curatect-class", str(cls["name"]), str(cls["value"])),
            anatomic_regions=[LUNG],
            display_color=hd.color.CIELabColor.from_string(str(cls.get("color", "#ffffff"))),
        )
        for number, cls in enumerate(ordered, start=1)
    ]
    pixels = table[labels.astype(np.uint8)]
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="CurateCT",
        manufacturer_model_name="CurateCT curated labels",
        software_versions="1",
        device_serial_number="curatect",
        content_label="LESIONS",
        content_description=content_description[:64] or "Curated lesion labels",
        series_description="CurateCT curated labels",
        # All background ("no lesions") is a finding too: keep the empty frames then.
        omit_empty_frames=bool(pixels.any()),
    )


def _finish(send: PacsSend, status: str, detail: str = "", **fields) -> PacsSend:
    """End the running send (core.jobs) with its audit event."""
    details = {
        "scan": send.scan_id,
        "campaign": send.campaign_id,
        "revision_id": fields.get("revision_id") or send.revision_id,
        "remote": send.remote.name,
        "detail": detail[:500],
    }
    if status == PacsSend.Status.FAILED:
        job_fail(
            send,
            detail or "the send failed",
            actor_label="pacs-send",
            action="pacs_send",
            audit=details,
            **fields,
        )
    else:
        job_finish(
            send,
            status,
            actor_label="pacs-send",
            action="pacs_send",
            audit=details,
            detail=detail[:2000],
            **fields,
        )
    send.refresh_from_db()
    return send


def _curated(send: PacsSend) -> CuratedRevision | None:
    """The current curated revision to send: the one named, else the scan's latest."""
    qs = curated_revisions(send.campaign_id).filter(annotation__scan=send.scan)
    if send.revision_id:
        qs = qs.filter(revision_id=send.revision_id)
    return qs.select_related("annotation__campaign").order_by("-curated_at", "-pk").first()


def _content_description(scan_labels: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in sorted(scan_labels.items()))[:64]


def send_run(send_id: int, *, worker: str = "") -> PacsSend:
    """Build and send the SEG of one PacsSend. A send another worker claimed, or that ended,
    is left alone (idempotent)."""
    send = PacsSend.objects.select_related("remote", "scan__study__patient").get(pk=send_id)
    if not job_claim(send, worker=worker):
        send.refresh_from_db()
        return send
    curated = _curated(send)
    if curated is None:
        return _finish(
            send,
            PacsSend.Status.FAILED,
            "the scan has no curated labels to send (its batch is not approved, or was reopened)",
        )
    scan: Scan = send.scan
    campaign = curated.annotation.campaign
    try:
        _ensure_origin(send.remote, scan)
        labels = storage.load_labels(curated.revision.label_sha256, scan.shape)
        # The same send always yields the same UIDs: a redelivered task replaces, never duplicates.
        seg = build_seg(
            original_sources(scan),
            labels,
            campaign.label_schema["classes"],
            sop_uid=stable_uid("curatect-pacs-seg", str(send.pk), str(curated.revision_id)),
            series_uid=stable_uid("curatect-pacs-seg-series", str(send.pk)),
            content_description=_content_description(curated.revision.scan_labels or {}),
        )
        if send.remote.send_method == RemotePacs.SendMethod.CSTORE:
            pacs.cstore(send.remote, [seg])
        else:
            pacs.stow(send.remote, [seg])
    except (pacs.RemoteError, SegError, OriginUnknown) as exc:
        logger.warning("label send %s to %s failed: %s", send.pk, send.remote.name, exc)
        return _finish(
            send, PacsSend.Status.FAILED, str(exc), revision_id=curated.revision_id, campaign_id=campaign.pk
        )
    except Exception as exc:  # never leave a send "running" forever (time limit, bug)
        logger.exception("label send %s to %s failed", send.pk, send.remote.name)
        return _finish(
            send,
            PacsSend.Status.FAILED,
            reason_of(exc),
            revision_id=curated.revision_id,
            campaign_id=campaign.pk,
        )
    return _finish(
        send,
        PacsSend.Status.SENT,
        f"sent by {send.remote.get_send_method_display()}",
        revision_id=curated.revision_id,
        campaign_id=campaign.pk,
        seg_sop_uid=str(seg.SOPInstanceUID),
    )


def _ensure_origin(remote: RemotePacs, scan: Scan) -> None:
    """Scans that came by upload have no recorded original UIDs: look them up on the PACS."""
    if SeriesOrigin.objects.filter(scan=scan).exists() or not remote.dicomweb_url:
        return
    try:
        services.origin_lookup(remote, scan)
    except pacs.RemoteError as exc:
        logger.info("origin lookup for scan %s on %s failed: %s", scan.pk, remote.name, exc)


def queue_approved(curated: list[CuratedRevision]) -> list[int]:
    """Queue a send per curated revision and PACS with send_on_approval, once per pair."""
    queued = []
    for cr in curated:
        scan = cr.annotation.scan
        remotes = RemotePacs.objects.filter(
            institution_id=scan.study.institution_id, send_on_approval=True
        ).exclude(send_method="")
        for remote in remotes:
            if PacsSend.objects.filter(remote=remote, revision_id=cr.revision_id).exists():
                continue
            send = services.send_request(
                actor=None,
                scan=scan,
                remote=remote,
                campaign=cr.annotation.campaign,
                trigger=PacsSend.Trigger.APPROVAL,
                revision_id=cr.revision_id,
            )
            queued.append(send.pk)
    return queued


@shared_task(
    bind=True, name="modelassist.pacs_send.send_run", acks_late=True, soft_time_limit=900, time_limit=960
)
def send_run_task(self, send_id: int) -> str:
    return send_run(send_id, worker=self.request.hostname or "").status


@shared_task(name="modelassist.pacs_send.send_approved_sweep", soft_time_limit=600, time_limit=660)
def send_approved_sweep() -> list[int]:
    """Periodic: curated labels of institutions whose PACS wants them, not yet sent there."""
    institutions = (
        RemotePacs.objects.filter(send_on_approval=True).exclude(send_method="").values("institution_id")
    )
    curated = (
        curated_revisions()
        .filter(annotation__scan__study__institution__in=institutions)
        .select_related("annotation__scan__study", "annotation__campaign")
    )
    return queue_approved(list(curated))


@shared_task(name="modelassist.pacs_send.send_batch", soft_time_limit=600, time_limit=660)
def send_batch(batch_id: int) -> list[int]:
    """One approved batch (for a hook on approval; the periodic sweep covers it otherwise)."""
    curated = (
        curated_revisions()
        .filter(review__batch_id=batch_id)
        .select_related("annotation__scan__study", "annotation__campaign")
    )
    return queue_approved(list(curated))
