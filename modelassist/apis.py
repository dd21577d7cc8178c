"""Model-assist API: pre-segmentation progress, model versions, quantification reports,
dataset exports and training runs. Thin: parse, call a service or selector, shape output."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import campaign_and_scan
from core.api_errors import Conflict, DomainError, NotFound
from core.api_fields import row_id_field
from core.selectors import campaigns_visible_to, scans_visible_to
from modelassist import selectors
from modelassist import serializers as out
from modelassist.models import DatasetExport, JobStatus, ModelVersion, TrainingRun
from modelassist.services import export as exports
from modelassist.services import export_archive, model_versions, preseg, quantification, training

# ----------------------------------------------------------------------------- pre-segmentation


class PresegApi(APIView):
    """GET: the batch's pre-segmentation progress, per scan. POST (data manager): re-run it;
    failed and lost scans are retried, finished ones stay."""

    @extend_schema(responses=out.PresegProgressOut, operation_id="presegmentation_progress")
    def get(self, request: Request, batch_id: int) -> Response:
        batch = selectors.batch_for_user(request.user, batch_id)
        return Response(selectors.preseg_progress(batch))

    @extend_schema(request=None, responses={202: out.PresegProgressOut}, operation_id="presegmentation_rerun")
    def post(self, request: Request, batch_id: int) -> Response:
        batch = selectors.batch_for_user(request.user, batch_id)
        preseg.preseg_rerun(actor=request.user, batch=batch)
        return Response(selectors.preseg_progress(batch), status=status.HTTP_202_ACCEPTED)


# ----------------------------------------------------------------------------- model versions


class ModelVersionUploadIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    file = serializers.FileField()
    activate = serializers.BooleanField(default=False)


class ModelVersionListApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses=out.ModelVersionsOut, operation_id="model_versions_list")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
        versions = ModelVersion.objects.filter(campaign=campaign).select_related("trained_on", "created_by")
        active = next((v for v in versions if v.is_active), None)
        return Response(
            {
                "active": selectors.model_version_out(active),
                "versions": [selectors.model_version_out(v) for v in versions.order_by("-pk")],
            }
        )

    @extend_schema(
        request={"multipart/form-data": ModelVersionUploadIn},
        responses={201: out.ModelVersionOut},
        operation_id="model_version_upload",
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.managed_campaign(request.user, campaign_id, "upload model weights")
        body = ModelVersionUploadIn(data=request.data)
        body.is_valid(raise_exception=True)
        version = model_versions.model_version_upload(
            actor=request.user,
            campaign=campaign,
            name=body.validated_data["name"],
            upload=body.validated_data["file"],
            activate=body.validated_data["activate"],
        )
        return Response(selectors.model_version_out(version), status=status.HTTP_201_CREATED)


class ReasonIn(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="for the audit trail"
    )


def _reason(request: Request) -> str:
    body = ReasonIn(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data["reason"][:500]


class ModelVersionActivateApi(APIView):
    @extend_schema(request=ReasonIn, responses=out.ModelVersionOut, operation_id="model_version_activate")
    def post(self, request: Request, version_id: int) -> Response:
        version = get_object_or_404(selectors.model_versions_visible_to(request.user), pk=version_id)
        version = model_versions.model_version_activate(
            actor=request.user, version=version, reason=_reason(request)
        )
        return Response(selectors.model_version_out(version))


class ModelVersionDeactivateApi(APIView):
    """Back to the baseline: no model version of the campaign is active."""

    @extend_schema(request=ReasonIn, responses=out.ModelVersionOut, operation_id="model_versions_deactivate")
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
        model_versions.model_version_deactivate(
            actor=request.user, campaign=campaign, reason=_reason(request)
        )
        return Response(selectors.model_version_out(None))


# ----------------------------------------------------------------------------- reports


class ScanReportApi(APIView):
    """The quantification report of a scan: head revision, `?revision=<id>` or `?revision=curated`."""

    @extend_schema(
        parameters=[
            OpenApiParameter("revision", str, description='a revision id, "head" (default) or "curated"')
        ],
        responses=out.ScanReportOut,
        operation_id="scan_report",
    )
    def get(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        revision, selected_by = quantification.report_revision(
            campaign, scan, request.query_params.get("revision")
        )
        report = quantification.scan_report(campaign, scan, revision, selected_by)
        report["classifier"] = quantification.report_classifier(campaign, scan, request.user)
        return Response(report)


class PatientReportsApi(APIView):
    """A patient's serial scans in a campaign (`?campaign=<id>`), oldest first, with reports."""

    @extend_schema(
        parameters=[OpenApiParameter("campaign", int, required=True)],
        responses=out.PatientReportsOut,
        operation_id="patient_reports",
    )
    def get(self, request: Request, pseudonym: str) -> Response:
        campaign_id = request.query_params.get("campaign")
        if not campaign_id or not str(campaign_id).isdigit():
            raise DomainError("say which campaign: ?campaign=<id>", code="campaign_required")
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=int(campaign_id))
        scans = scans_visible_to(request.user).filter(
            study__patient__pseudonym=pseudonym, campaign_scans__campaign=campaign
        )
        if not scans.exists():
            raise NotFound("no scans of this patient in this campaign that you may see", code="no_scans")
        return Response(quantification.patient_reports(campaign, scans, pseudonym))


# ----------------------------------------------------------------------------- exports


def export_out(export: DatasetExport) -> dict:
    return {
        "id": export.pk,
        "campaign": export.campaign_id,
        "version": export.version,
        "status": export.status,
        "progress": export.progress,
        "message": export.message,
        "path": export.path,
        "content_sha256": export.content_sha256,
        "summary": export.summary,
        "archive_bytes": (export.summary or {}).get("archive_bytes"),
        "error": export.error,
        "created_by": export.created_by.username if export.created_by else None,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "download_url": f"/api/exports/{export.pk}/download/" if export.status == JobStatus.DONE else None,
    }


class ExportListApi(APIView):
    @extend_schema(responses=out.DatasetExportOut(many=True), operation_id="exports_list")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.managed_campaign(request.user, campaign_id, "see dataset exports")
        rows = DatasetExport.objects.filter(campaign=campaign).select_related("created_by").order_by("-pk")
        return Response([export_out(e) for e in rows])

    @extend_schema(request=None, responses={202: out.DatasetExportOut}, operation_id="export_create")
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.managed_campaign(request.user, campaign_id, "export datasets")
        export = exports.export_request(actor=request.user, campaign=campaign)
        return Response(export_out(export), status=status.HTTP_202_ACCEPTED)


def _managed_export(request: Request, export_id: int) -> DatasetExport:
    export = get_object_or_404(
        selectors.exports_visible_to(request.user).select_related("campaign"), pk=export_id
    )
    selectors.require_manager(request.user, export.campaign, "see dataset exports")
    return export


class ExportDetailApi(APIView):
    @extend_schema(responses=out.DatasetExportOut, operation_id="export_retrieve")
    def get(self, request: Request, export_id: int) -> Response:
        return Response(export_out(_managed_export(request, export_id)))


class ExportDownloadApi(APIView):
    """The published export as one zip, streamed."""

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY}, operation_id="export_download")
    def get(self, request: Request, export_id: int) -> StreamingHttpResponse:
        export = _managed_export(request, export_id)
        if export.status != JobStatus.DONE:
            raise Conflict(
                f"this export is {export.status}; download it once it is done", code="export_not_ready"
            )
        response = StreamingHttpResponse(
            export_archive.export_zip_stream(export), content_type="application/zip"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{export_archive.export_archive_name(export)}.zip"'
        )
        response["X-Content-SHA256"] = export.content_sha256
        return response


# ----------------------------------------------------------------------------- training


class TrainingRunIn(serializers.Serializer):
    export_id = row_id_field(required=False, allow_null=True)
    architecture = serializers.CharField(required=False, max_length=50)
    params = serializers.DictField(required=False)


def training_run_out(run: TrainingRun, *, history: bool = True) -> dict:
    out = {
        "id": run.pk,
        "campaign": run.campaign_id,
        "status": run.status,
        "trigger": run.trigger,
        "progress": run.progress,
        "message": run.message,
        "architecture": run.architecture,
        "params": run.params,
        "export": {"id": run.export_id, "version": run.export.version} if run.export_id else None,
        "metrics": run.metrics,
        "model_version": selectors.model_version_out(run.model_version) if run.model_version_id else None,
        "promoted": run.promoted,
        "decision": run.decision,
        "error": run.error,
        "requested_by": run.requested_by.username if run.requested_by else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
    if history:
        out["history"] = run.history
    return out


class TrainingRunListApi(APIView):
    @extend_schema(responses=out.TrainingRunOut(many=True), operation_id="training_runs_list")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.managed_campaign(request.user, campaign_id, "see training runs")
        runs = (
            TrainingRun.objects.filter(campaign=campaign)
            .select_related("export", "model_version__trained_on", "requested_by")
            .order_by("-pk")
        )
        return Response([training_run_out(r, history=False) for r in runs])

    @extend_schema(
        request=TrainingRunIn,
        responses={202: out.TrainingRunDetailOut},
        operation_id="training_run_create",
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = selectors.managed_campaign(request.user, campaign_id, "start training runs")
        body = TrainingRunIn(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        export = None
        if v.get("export_id") is not None:
            export = get_object_or_404(DatasetExport.objects.filter(campaign=campaign), pk=v["export_id"])
        run = training.training_request(
            actor=request.user,
            campaign=campaign,
            export=export,
            architecture=v.get("architecture"),
            params=v.get("params"),
        )
        return Response(training_run_out(run), status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    """A run with its per-epoch history (loss, validation Dice): poll it to chart live."""

    @extend_schema(responses=out.TrainingRunDetailOut, operation_id="training_run_retrieve")
    def get(self, request: Request, run_id: int) -> Response:
        run = get_object_or_404(
            selectors.training_runs_visible_to(request.user).select_related(
                "campaign", "export", "model_version__trained_on", "requested_by"
            ),
            pk=run_id,
        )
        selectors.require_manager(request.user, run.campaign, "see training runs")
        return Response(training_run_out(run))
