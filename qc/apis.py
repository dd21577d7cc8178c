"""QC API: submit, checks, spot checks, the annotator's findings, batch board and reopening,
QC figures and a scan's audit trail. Views parse, call a service or selector, and shape output."""

from __future__ import annotations

import csv
import io
import json

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import campaign_and_scan
from annotation.models import Annotation
from annotation.requests import revision_id_from
from core.api_errors import DomainError, Forbidden
from core.api_fields import row_id_field
from core.models import AuditEvent, Batch, BatchItem, Role, Scan, User
from core.permissions import is_data_manager, require_data_manager
from core.selectors import batches_visible_to, campaign_roles, campaigns_visible_to
from core.services.batches import open_batch_of
from qc import metrics, permissions, selectors, services
from qc import serializers as out
from qc.models import BatchReview, Check, SpotCheck, Verdict

# --- submit ---------------------------------------------------------------------------------


class SubmitIn(serializers.Serializer):
    revision_id = row_id_field(required=False)


def _revision_id_from(request: Request, body: dict) -> int:
    return revision_id_from(
        request,
        body,
        "revision_id",
        "say which revision you submit: send If-Match with its ETag, or revision_id",
    )


class SubmitApi(APIView):
    @extend_schema(request=SubmitIn, responses=out.SubmitOut, operation_id="annotation_submit")
    def post(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        body = SubmitIn(data=request.data)
        body.is_valid(raise_exception=True)
        submission = services.revision_submit(
            actor=request.user,
            campaign=campaign,
            scan=scan,
            revision_id=_revision_id_from(request, body.validated_data),
        )
        # No checker identities here: the annotator never learns who checks them.
        response = Response(
            {
                "annotation_id": submission.annotation.pk,
                "state": submission.annotation.state,
                "revision_id": submission.revision.pk,
                "round": submission.round,
            }
        )
        response["ETag"] = submission.revision.etag
        return response


# --- checks -------------------------------------------------------------------------------------


class VerdictIn(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=[Verdict.PASS, Verdict.FAIL])
    findings = serializers.JSONField(required=False, default=list)
    time_spent_s = serializers.FloatField(required=False, default=0.0)


def _queue_item(check: Check) -> dict:
    annotation = check.annotation
    return {
        "id": check.pk,
        "campaign": {"id": annotation.campaign_id, "slug": annotation.campaign.slug},
        "scan_id": annotation.scan_id,
        "annotation_id": annotation.pk,
        "revision": {"id": check.revision_id, "number": check.revision.number},
        "round": check.round,
        "slot": check.slot,
        "assigned_at": check.assigned_at,
    }


class CheckQueueApi(APIView):
    @extend_schema(responses=out.CheckQueueItemOut(many=True), operation_id="qc_checks_list")
    def get(self, request: Request) -> Response:
        return Response([_queue_item(c) for c in selectors.checker_queue(request.user)])


def _check_or_404(request: Request, check_id: int) -> Check:
    try:
        return selectors.check_for_user(request.user, check_id)
    except Check.DoesNotExist as exc:
        raise Http404("no such check among yours") from exc


def _verdict_in(request: Request) -> dict:
    """verdict, findings and time_spent_s of a check or spot-check verdict, validated."""
    body = VerdictIn(data=request.data)
    body.is_valid(raise_exception=True)
    v = body.validated_data
    return {"verdict": v["verdict"], "findings": v["findings"], "time_spent_s": v["time_spent_s"]}


class CheckDetailApi(APIView):
    @extend_schema(responses=out.CheckDetailOut, operation_id="qc_check_retrieve")
    def get(self, request: Request, check_id: int) -> Response:
        check = _check_or_404(request, check_id)
        return Response(selectors.check_detail(request.user, check))


class CheckVerdictApi(APIView):
    @extend_schema(request=VerdictIn, responses=out.CheckDetailOut, operation_id="qc_check_verdict")
    def post(self, request: Request, check_id: int) -> Response:
        check = _check_or_404(request, check_id)
        check = services.check_record(actor=request.user, check=check, **_verdict_in(request))
        return Response(
            selectors.check_detail(request.user, selectors.check_for_user(request.user, check.pk))
        )


class ReassignIn(serializers.Serializer):
    user_id = row_id_field(required=False)
    checker_id = row_id_field(required=False)
    senior_id = row_id_field(required=False)


def _user_or_400(user_id: int | None) -> User:
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id is not None else None
    if user is None:
        raise DomainError(f"no active user with id {user_id}", code="no_such_user")
    return user


class CheckReassignApi(APIView):
    @extend_schema(request=ReassignIn, responses=out.CheckReassignOut, operation_id="qc_check_reassign")
    def post(self, request: Request, check_id: int) -> Response:
        check = _check_or_404(request, check_id)
        body = ReassignIn(data=request.data)
        body.is_valid(raise_exception=True)
        checker = _user_or_400(body.validated_data.get("checker_id", body.validated_data.get("user_id")))
        check = services.check_reassign(actor=request.user, check=check, checker=checker)
        return Response(
            {
                "id": check.pk,
                "slot": check.slot,
                "round": check.round,
                "checker": checker.username,
                "checker_id": checker.pk,
                "verdict": check.verdict,
            }
        )


# --- spot checks ----------------------------------------------------------------------------------


class SpotCheckQueueApi(APIView):
    @extend_schema(responses=out.SpotCheckDetailOut(many=True), operation_id="qc_spot_checks_list")
    def get(self, request: Request) -> Response:
        return Response([selectors.spot_check_detail(sc) for sc in selectors.senior_queue(request.user)])


def _spot_check_or_404(request: Request, spot_check_id: int) -> SpotCheck:
    try:
        return selectors.spot_check_for_user(request.user, spot_check_id)
    except SpotCheck.DoesNotExist as exc:
        raise Http404("no such spot check among yours") from exc


class SpotCheckDetailApi(APIView):
    @extend_schema(responses=out.SpotCheckDetailOut, operation_id="qc_spot_check_retrieve")
    def get(self, request: Request, spot_check_id: int) -> Response:
        return Response(selectors.spot_check_detail(_spot_check_or_404(request, spot_check_id)))


class SpotCheckVerdictApi(APIView):
    @extend_schema(request=VerdictIn, responses=out.SpotCheckDetailOut, operation_id="qc_spot_check_verdict")
    def post(self, request: Request, spot_check_id: int) -> Response:
        spot_check = _spot_check_or_404(request, spot_check_id)
        spot_check = services.spot_check_record(
            actor=request.user, spot_check=spot_check, **_verdict_in(request)
        )
        return Response(
            selectors.spot_check_detail(selectors.spot_check_for_user(request.user, spot_check.pk))
        )


class SpotCheckReassignApi(APIView):
    @extend_schema(
        request=ReassignIn,
        responses=out.SpotCheckReassignOut,
        operation_id="qc_spot_check_reassign",
    )
    def post(self, request: Request, spot_check_id: int) -> Response:
        spot_check = _spot_check_or_404(request, spot_check_id)
        body = ReassignIn(data=request.data)
        body.is_valid(raise_exception=True)
        senior = _user_or_400(body.validated_data.get("senior_id", body.validated_data.get("user_id")))
        spot_check = services.spot_check_reassign(actor=request.user, spot_check=spot_check, senior=senior)
        return Response(
            {
                "id": spot_check.pk,
                "senior": senior.username,
                "senior_id": senior.pk,
                "verdict": spot_check.verdict,
            }
        )


# --- the annotator's findings ---------------------------------------------------------------------


class FindingsApi(APIView):
    """The findings of the last failed review, with reviewers shown as "checker A"/"checker B"/"senior"."""

    @extend_schema(responses=out.AnnotatorFindingsOut, operation_id="scan_findings")
    def get(self, request: Request, campaign_id: int, scan_id: int) -> Response:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        is_annotator = open_batch_of(request.user, campaign, scan.pk) is not None
        if not is_annotator and not is_data_manager(request.user, campaign):
            raise Forbidden("findings are for the annotator of this scan", code="wrong_role")
        annotation = Annotation.objects.filter(campaign=campaign, scan=scan).first()
        if annotation is None:
            return Response(
                {
                    "annotation_id": None,
                    "state": "not_started",
                    "source": None,
                    "round": None,
                    "revision_id": None,
                    "reviews": [],
                }
            )
        return Response(selectors.annotator_findings(annotation))


# --- batches --------------------------------------------------------------------------------------


def _managed_batch(request: Request, batch_id: int) -> Batch:
    batch = get_object_or_404(
        batches_visible_to(request.user).select_related("campaign", "annotator"), pk=batch_id
    )
    require_data_manager(request.user, batch.campaign, "do this")
    return batch


class BatchBoardApi(APIView):
    @extend_schema(responses=out.BatchBoardOut, operation_id="batch_board")
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(selectors.batch_board(request.user, _managed_batch(request, batch_id)))


class ReopenIn(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, default="")
    scan_ids = serializers.ListField(child=row_id_field(), required=False)


class BatchReopenApi(APIView):
    @extend_schema(request=ReopenIn, responses=out.BatchBoardOut, operation_id="batch_reopen")
    def post(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(batches_visible_to(request.user).select_related("campaign"), pk=batch_id)
        body = ReopenIn(data=request.data)
        body.is_valid(raise_exception=True)
        services.batch_reopen(
            actor=request.user,
            batch=batch,
            reason=body.validated_data["reason"],
            scan_ids=body.validated_data.get("scan_ids"),
        )
        return Response(selectors.batch_board(request.user, batch))


# --- figures and audit ----------------------------------------------------------------------------


class MetricsApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("campaign", int, required=True), OpenApiParameter("batch", int)],
        responses=out.QcMetricsOut,
        operation_id="qc_metrics",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("campaign")
        if not raw or not raw.isdigit():
            raise DomainError("give the campaign: ?campaign=<id>", code="campaign_required")
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=int(raw))
        if not campaign_roles(request.user, campaign) & {Role.DATA_MANAGER, Role.SENIOR}:
            raise Forbidden("QC figures are for data managers and senior radiologists", code="wrong_role")
        batch = None
        if request.query_params.get("batch"):
            batch_raw = request.query_params["batch"]
            if not batch_raw.isdigit():
                raise DomainError("batch must be an id", code="bad_batch")
            batch = get_object_or_404(Batch.objects.filter(campaign=campaign), pk=int(batch_raw))
        return Response(metrics.qc_metrics(campaign, batch))


AUDIT_COLUMNS = [
    "time",
    "actor",
    "action",
    "object_type",
    "object_id",
    "from_state",
    "to_state",
    "revision_id",
    "details",
    "findings",
]


def slice_number(scan: Scan, z: int) -> int:
    """The 1-based slice number counted from the head end, as the viewer shows it
    (frontend/src/panels/slices.ts): z grows towards the head unless the slice normal points
    to the feet (DICOM's +z is superior)."""
    return int(z) + 1 if float(scan.direction[8]) < 0 else scan.slices - int(z)


def findings_words(scan: Scan, findings: list[dict]) -> str:
    """Words like "slice 12: missed lesion; no slice: other", never the stored z."""
    words = []
    for f in findings:
        where = "no slice" if f.get("slice") is None else f"slice {slice_number(scan, f['slice'])}"
        words.append(f"{where}: {str(f.get('kind', '')).replace('_', ' ')}")
    return "; ".join(words)


def _verdict_findings(events: list[AuditEvent]) -> dict[tuple[str, str], list[dict]]:
    """(object_type, object_id) → the findings of the check or spot check an event is about."""
    ids = {kind: [e.object_id for e in events if e.object_type == kind] for kind in ("check", "spotcheck")}
    rows = [("check", c) for c in Check.objects.filter(pk__in=[i for i in ids["check"] if i.isdigit()])]
    rows += [
        ("spotcheck", s)
        for s in SpotCheck.objects.filter(pk__in=[i for i in ids["spotcheck"] if i.isdigit()])
    ]
    return {(kind, str(row.pk)): row.findings or [] for kind, row in rows}


def _hidden_check_ids(user: User, annotation: Annotation | None) -> set[str]:
    """The other check of any open round this user holds a check of: blind for every role."""
    if annotation is None:
        return set()
    hidden = permissions.checks_hidden_from(user).filter(annotation=annotation)
    return {str(pk) for pk in hidden.values_list("pk", flat=True)}


class AuditCsvApi(APIView):
    """The audit trail of one scan in one campaign (and of the QC of its batches), as CSV."""

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, operation_id="scan_audit_csv")
    def get(self, request: Request, campaign_id: int, scan_id: int) -> HttpResponse:
        campaign, scan = campaign_and_scan(request, campaign_id, scan_id)
        if not is_data_manager(request.user, campaign):
            # The trail names checkers; the annotator must never see who checked them.
            raise Forbidden("the audit trail is for data managers", code="wrong_role")
        annotation = Annotation.objects.filter(campaign=campaign, scan=scan).first()
        reviews = BatchReview.objects.filter(
            batch__in=BatchItem.objects.filter(campaign=campaign, scan=scan).values("batch_id")
        ).values_list("pk", flat=True)
        events = AuditEvent.objects.filter(campaign=campaign, scan=scan) | AuditEvent.objects.filter(
            object_type="batchreview", object_id__in=[str(pk) for pk in reviews]
        )
        hidden = _hidden_check_ids(request.user, annotation)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(AUDIT_COLUMNS)
        rows = [
            e
            for e in events.select_related("actor").order_by("created_at", "pk")
            if not (e.object_type == "check" and e.object_id in hidden)
        ]
        findings = _verdict_findings(rows)
        for e in rows:
            writer.writerow(
                [
                    e.created_at.isoformat(),
                    e.actor_label or (e.actor.username if e.actor else ""),
                    e.action,
                    e.object_type,
                    e.object_id,
                    e.from_state,
                    e.to_state,
                    e.revision_id if e.revision_id is not None else "",
                    json.dumps(e.details, sort_keys=True),
                    findings_words(scan, findings.get((e.object_type, e.object_id), [])),
                ]
            )
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="audit-campaign{campaign.pk}-scan{scan.pk}.csv"'
        )
        return response
