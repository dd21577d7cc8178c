"""Annotation API: worklist, annotation head, label volumes, saves and the region-growing brush."""

from __future__ import annotations

import json
import time

import numpy as np
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import label_codec, lung_masks, region_grow, storage, warming
from annotation.access import campaign_and_scan
from annotation.models import EDITABLE_STATES, Annotation, Revision
from annotation.permissions import revisions_readable_by
from annotation.requests import revision_id_from
from annotation.selectors import revisions_for_user, worklist_for
from annotation.services import Box, revision_save
from core.api_errors import DomainError, NotFound, id_param
from core.api_fields import index_field, row_id_field
from core.models import Scan
from imaging import volume_cache


class RevisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    parent_id = serializers.IntegerField(allow_null=True)
    source = serializers.CharField()
    author = serializers.CharField(allow_null=True)
    scan_labels = serializers.DictField(child=serializers.CharField())
    voxel_counts = serializers.DictField(child=serializers.IntegerField(), help_text="class value → voxels")
    label_sha256 = serializers.CharField()
    time_spent_s = serializers.FloatField()
    created_at = serializers.DateTimeField()


def revision_out(rev: Revision | None) -> dict | None:
    if rev is None:
        return None
    return {
        "id": rev.pk,
        "number": rev.number,
        "parent_id": rev.parent_id,
        "source": rev.source,
        "author": rev.author_display,
        "scan_labels": rev.scan_labels,
        "voxel_counts": rev.voxel_counts,
        "label_sha256": rev.label_sha256,
        "time_spent_s": rev.time_spent_s,
        "created_at": rev.created_at,
    }


class WorklistItemOut(serializers.Serializer):
    scan_id = serializers.IntegerField()
    position = serializers.IntegerField()
    state = serializers.CharField()


class WorklistBatchOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    campaign = serializers.DictField(help_text="id, slug and name")
    progress = serializers.DictField(child=serializers.IntegerField(), help_text="scans per state")
    items = WorklistItemOut(many=True)


class WorklistApi(APIView):
    @extend_schema(responses=WorklistBatchOut(many=True), operation_id="worklist")
    def get(self, request: Request) -> Response:
        return Response(worklist_for(request.user))


class AnnotationOut(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    state = serializers.CharField()
    head = RevisionOut(allow_null=True)


class AnnotationApi(APIView):
    @extend_schema(responses=AnnotationOut, operation_id="annotation_retrieve")
    def get(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        annotation = (
            Annotation.objects.filter(campaign=campaign, scan=scan).select_related("head__author").first()
        )
        head = annotation.head if annotation else None
        if annotation is None or annotation.state in EDITABLE_STATES:
            # The viewer opens a scan for editing: its first click and save find it warm.
            warming.scan_caches_warm(scan, annotation)
        response = Response(
            {
                "id": annotation.pk if annotation else None,
                "state": annotation.state if annotation else "not_started",
                "head": revision_out(head),
            }
        )
        if head is not None:
            response["ETag"] = head.etag
        return response


class OctetStreamRenderer(BaseRenderer):
    """Lets clients ask for application/octet-stream; errors still go out as JSON text."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return data if isinstance(data, bytes) else json.dumps(data, default=str).encode()


class LabelsApi(APIView):
    """The label volume of a revision (default: the head), as stored: one zstd frame."""

    renderer_classes = [JSONRenderer, OctetStreamRenderer]

    @extend_schema(
        parameters=[OpenApiParameter("revision", int, description="a revision id (default: the head)")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        operation_id="annotation_labels",
    )
    def get(self, request: Request, campaign_id: int, scan_id: int) -> HttpResponse:
        if "revision" in request.query_params:
            # A named revision: a former annotator may still read their own (annotation.permissions).
            revisions = revisions_readable_by(request.user, campaign_id, scan_id)
            rev = get_object_or_404(
                revisions.select_related("annotation__scan"),
                pk=id_param(request.query_params["revision"], "revision"),
            )
            scan = rev.annotation.scan
        else:
            campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
            annotation = (
                Annotation.objects.filter(campaign=campaign, scan=scan).select_related("head").first()
            )
            rev = annotation.head if annotation else None
            if rev is None:
                raise NotFound("this scan has no revision yet", code="no_revision")
        response = HttpResponse(storage.load_blob(rev.label_sha256), content_type="application/octet-stream")
        response["X-Label-Shape"] = ",".join(str(n) for n in scan.shape)
        response["X-Label-Encoding"] = "zstd"
        response["ETag"] = rev.etag
        response["Access-Control-Expose-Headers"] = "X-Label-Shape, X-Label-Encoding, ETag"
        return response


class PayloadIn(serializers.Serializer):
    encoding = serializers.ChoiceField(choices=["zstd", "gzip"])
    data = serializers.CharField()


class BoxIn(PayloadIn):
    offset = serializers.ListField(child=index_field(), min_length=3, max_length=3)
    shape = serializers.ListField(child=index_field(min_value=1), min_length=3, max_length=3)


class RevisionIn(serializers.Serializer):
    parent_id = row_id_field(required=False, allow_null=True)
    scan_labels = serializers.DictField(child=serializers.CharField(), required=False)
    time_spent_s = serializers.FloatField(required=False, default=0.0)
    boxes = BoxIn(many=True, required=False)
    full = PayloadIn(required=False)

    def validate(self, attrs: dict) -> dict:
        # Which one the client meant is unknowable; silently dropping the boxes would lose edits.
        if "full" in attrs and "boxes" in attrs:
            raise serializers.ValidationError(
                "send either full (the whole volume) or boxes (changed parts), not both",
                code="ambiguous_payload",
            )
        return attrs


def parent_from(request: Request, body: dict) -> int | None:
    return revision_id_from(
        request,
        body,
        "parent_id",
        "say which revision you edited: send If-Match with its ETag, or parent_id (null for the first)",
    )


def _decode(payload: dict, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    try:
        raw = label_codec.decode_payload(payload["encoding"], payload["data"], size)
    except label_codec.LabelPayloadError as exc:
        raise DomainError(str(exc), code="bad_payload") from exc
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


class RevisionCreateApi(APIView):
    @extend_schema(responses=RevisionOut(many=True), operation_id="revisions_list")
    def get(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        """The revisions the user may read, oldest first: all of them for whoever may read the
        scan, a former annotator's own only (annotation.permissions)."""
        return Response([revision_out(r) for r in revisions_for_user(request.user, campaign_id, scan_id)])

    @extend_schema(
        request=RevisionIn,
        parameters=[
            OpenApiParameter(
                "If-Match",
                str,
                OpenApiParameter.HEADER,
                description='the ETag of the edited revision ("rev-12")',
            )
        ],
        responses={201: RevisionOut, 409: OpenApiResponse(description="stale parent: the current head")},
        operation_id="revision_save",
    )
    def post(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        body = RevisionIn(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        parent_id = parent_from(request, v)
        boxes, full = None, None
        if "full" in v:
            full = _decode(v["full"], scan.shape)
        else:
            boxes = []
            for b in v.get("boxes", []):
                try:
                    label_codec.validate_box(scan.shape, tuple(b["offset"]), tuple(b["shape"]))
                except label_codec.LabelPayloadError as exc:
                    raise DomainError(str(exc), code="bad_box") from exc
                boxes.append(Box(offset=tuple(b["offset"]), data=_decode(b, tuple(b["shape"]))))
        rev = revision_save(
            actor=request.user,
            campaign=campaign,
            scan=scan,
            parent_id=parent_id,
            boxes=boxes,
            full=full,
            scan_labels=v.get("scan_labels"),
            time_spent_s=v["time_spent_s"],
        )
        response = Response(revision_out(rev), status=status.HTTP_201_CREATED)
        response["ETag"] = rev.etag
        return response


class RegionGrowIn(serializers.Serializer):
    seed = serializers.ListField(child=index_field(), min_length=3, max_length=3)
    lower = serializers.FloatField(required=False)
    upper = serializers.FloatField(required=False)
    tolerance = serializers.FloatField(required=False, min_value=0)
    connectivity = serializers.ChoiceField(choices=[6, 26], default=6)
    radius_mm = serializers.FloatField(required=False, min_value=1, max_value=region_grow.MAX_RADIUS_MM)
    max_voxels = serializers.IntegerField(required=False, min_value=1, max_value=50_000_000)
    leak_check = serializers.BooleanField(
        default=True,
        help_text="cut the region at a narrow neck it leaks through (a vessel); false to grow to the radius",
    )
    within_lungs = serializers.BooleanField(
        default=False,
        help_text="keep the region inside the scan's lung mask (unrestricted when the scan has none)",
    )


class RegionGrowOut(serializers.Serializer):
    offset = serializers.ListField(child=serializers.IntegerField(), help_text="z, y, x")
    shape = serializers.ListField(child=serializers.IntegerField())
    encoding = serializers.CharField(help_text='always "zstd"')
    data = serializers.CharField(help_text="base64 of the zstd-compressed uint8 mask")
    voxels = serializers.IntegerField()
    capped = serializers.BooleanField()
    message = serializers.CharField()
    seed_hu = serializers.IntegerField()
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    volume_mm3 = serializers.FloatField(help_text="voxels × the voxel's volume")
    leak_cut_mm = serializers.FloatField(
        allow_null=True, help_text="the radius the leak check cut the region at, or null"
    )
    within_lungs = serializers.BooleanField(help_text="whether the lung mask limited the region")
    elapsed_ms = serializers.FloatField()


def scan_volume(scan: Scan) -> np.ndarray:
    return volume_cache.load_volume(warming.scan_volume_path(scan))


class RegionGrowApi(APIView):
    @extend_schema(request=RegionGrowIn, responses=RegionGrowOut, operation_id="region_grow")
    def post(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        started = time.perf_counter()
        _campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        body = RegionGrowIn(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        kwargs = {k: v[k] for k in ("lower", "upper", "tolerance", "radius_mm", "max_voxels") if k in v}
        within = lung_masks.scan_lung_region(scan) if v["within_lungs"] else None
        try:
            result = region_grow.grow_region(
                scan_volume(scan),
                tuple(v["seed"]),
                connectivity=v["connectivity"],
                spacing=tuple(scan.spacing),
                leak_check=v["leak_check"],
                within=within,
                **kwargs,
            )
        except region_grow.RegionGrowError as exc:
            raise DomainError(str(exc), code="bad_seed") from exc
        return Response(
            {
                "offset": list(result.offset),
                "shape": list(result.mask.shape),
                "encoding": "zstd",
                "data": label_codec.encode_payload(
                    np.ascontiguousarray(result.mask, dtype=np.uint8).tobytes()
                ),
                "voxels": result.voxels,
                "capped": result.capped,
                "message": result.message,
                "seed_hu": result.seed_hu,
                "lower": result.lower,
                "upper": result.upper,
                "volume_mm3": round(result.voxels * float(np.prod(scan.spacing)), 1),
                "leak_cut_mm": result.leak_cut_mm,
                "within_lungs": within is not None,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )


class LungMaskApi(APIView):
    """The scan's lung mask (one zstd frame, uint8 (z, y, x), 0 outside), for "paint inside
    lungs only"; 404 no_lung_mask when the platform has not computed one for this scan."""

    renderer_classes = [JSONRenderer, OctetStreamRenderer]

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY}, operation_id="lung_mask"
    )
    def get(self, request: Request, campaign_id: int, scan_id: int) -> HttpResponse:
        _campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        mask = lung_masks.scan_lung_mask(scan)
        if mask is None:
            raise NotFound(
                "no lung mask for this scan yet (the baseline pre-segmentation or the scan's report "
                "computes it): painting is unrestricted",
                code="no_lung_mask",
            )
        response = HttpResponse(label_codec.encode_volume(mask), content_type="application/octet-stream")
        response["X-Label-Shape"] = ",".join(str(n) for n in scan.shape)
        response["X-Label-Encoding"] = "zstd"
        return response
