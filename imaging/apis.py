"""Imaging API: DICOM imports (upload, server folder) and their progress."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import Conflict, DomainError, Forbidden
from core.models import Role
from core.selectors import (
    campaigns_visible_to,
    institutions_of,
)
from imaging.ingest.service import IMPORT_INCOMPLETE, import_job_cancel, import_upload_create
from imaging.models import ImportJob
from imaging.serializers import ImportOut, import_out


class ImportCreateIn(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(), required=False, help_text="DICOM files or zip archives"
    )
    institution = serializers.SlugField(required=False, help_text="default: the first one you manage")
    campaign = serializers.SlugField(required=False, help_text="the stored scans join it")
    import_incomplete = serializers.BooleanField(
        default=False,
        help_text="import anyway: store a series with a damaged or missing slice, the gap kept in its "
        "geometry (Scan.slice_positions); without it such a series is refused whole",
    )


class ImportCreateApi(APIView):
    """Upload DICOM files or a zip; the import runs on the ingest queue."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ImportCreateIn},
        responses={202: ImportOut},
        operation_id="import_create",
    )
    def post(self, request: Request) -> Response:
        inst_slug = request.data.get("institution")
        institution = (
            get_object_or_404(institutions_of(request.user, Role.DATA_MANAGER), slug=inst_slug)
            if inst_slug
            else institutions_of(request.user, Role.DATA_MANAGER).first()
        )
        if institution is None:
            raise Forbidden("only a data manager of an institution can import DICOM")
        campaign = None
        if request.data.get("campaign"):
            campaign = get_object_or_404(campaigns_visible_to(request.user), slug=request.data["campaign"])
        files = request.FILES.getlist("files")
        if not files:
            raise DomainError("attach DICOM files or a zip archive in the 'files' field", code="no_files")
        total = sum(f.size for f in files)
        if total > settings.INGEST_MAX_UPLOAD_BYTES:
            raise DomainError(f"upload of {total / 1e9:.1f} GB exceeds the limit; use manage.py import_dicom")
        options = ImportCreateIn(data={k: v for k, v in request.data.items() if k == IMPORT_INCOMPLETE})
        options.is_valid(raise_exception=True)
        job = import_upload_create(
            actor=request.user,
            institution=institution,
            campaign=campaign,
            files=files,
            import_incomplete=options.validated_data[IMPORT_INCOMPLETE],
        )
        return Response(import_out(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    @extend_schema(responses=ImportOut, operation_id="import_retrieve")
    def get(self, request: Request, job_id: int) -> Response:
        managed = institutions_of(request.user, Role.DATA_MANAGER)
        job = get_object_or_404(ImportJob.objects.filter(institution__in=managed), pk=job_id)
        return Response(import_out(job))


class ImportCancelApi(APIView):
    """Cancel a queued or running import; its raw files are deleted."""

    @extend_schema(request=None, responses=ImportOut, operation_id="import_cancel")
    def post(self, request: Request, job_id: int) -> Response:
        managed = institutions_of(request.user, Role.DATA_MANAGER)
        job = get_object_or_404(ImportJob.objects.filter(institution__in=managed), pk=job_id)
        if job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING):
            raise Conflict(
                f"the import has already ended ({job.status}); nothing to cancel", code="import_ended"
            )
        return Response(import_out(import_job_cancel(actor=request.user, job=job)))
