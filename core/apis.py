"""Core API: who am I, campaigns, scans, batches and the annotator's worklist, imports."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import DomainError
from core.api_fields import row_id_field
from core.models import Batch, Campaign, Institution, Role, User
from core.selectors import (
    batches_visible_to,
    campaign_roles,
    campaigns_visible_to,
    institutions_of,
    scans_visible_to,
)
from core.services import batches as batch_services


class CampaignOut(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = [
            "id",
            "slug",
            "name",
            "label_schema",
            "batch_size",
            "checkers_per_annotation",
            "spot_check_share",
            "institution",
        ]


class InstitutionOut(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class MeOut(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.DictField(
        child=serializers.ListField(child=serializers.ChoiceField(choices=Role.choices)),
        help_text="campaign id → the user's roles in it",
    )
    institutions = InstitutionOut(many=True)


class MeApi(APIView):
    @extend_schema(responses=MeOut, operation_id="me_retrieve")
    def get(self, request: Request) -> Response:
        user: User = request.user
        roles = {str(c.pk): sorted(campaign_roles(user, c)) for c in campaigns_visible_to(user)}
        return Response(
            {
                "id": user.pk,
                "username": user.username,
                "roles": roles,
                "institutions": [{"id": i.pk, "slug": i.slug, "name": i.name} for i in institutions_of(user)],
            }
        )


class CampaignListApi(APIView):
    @extend_schema(responses=CampaignOut(many=True), operation_id="campaigns_list")
    def get(self, request: Request) -> Response:
        return Response(CampaignOut(campaigns_visible_to(request.user).order_by("pk"), many=True).data)


class CampaignDetailApi(APIView):
    @extend_schema(responses=CampaignOut, operation_id="campaign_retrieve")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
        return Response(CampaignOut(campaign).data)


class ScanOut(serializers.Serializer):
    id = serializers.IntegerField()
    study_uid = serializers.CharField()
    series_uid = serializers.CharField()
    patient = serializers.CharField(help_text="the patient's pseudonym")
    study_date = serializers.DateField(allow_null=True)
    rows = serializers.IntegerField()
    columns = serializers.IntegerField()
    slices = serializers.IntegerField()
    spacing = serializers.ListField(child=serializers.FloatField(), help_text="x, y, z in mm")
    origin = serializers.ListField(child=serializers.FloatField())
    direction = serializers.JSONField()
    gaps = serializers.JSONField()
    slice_positions = serializers.ListField(
        child=serializers.FloatField(),
        help_text="with gaps: each slice's distance from the first along the slice direction (mm); else empty",
    )
    instances = serializers.ListField(child=serializers.CharField(), help_text="SOP UIDs in slice order")


class ScanDetailApi(APIView):
    @extend_schema(responses=ScanOut, operation_id="scan_retrieve")
    def get(self, request: Request, scan_id: int) -> Response:
        scan = get_object_or_404(scans_visible_to(request.user).select_related("study__patient"), pk=scan_id)
        return Response(
            {
                "id": scan.pk,
                "study_uid": scan.study.study_uid,
                "series_uid": scan.series_uid,
                "patient": scan.study.patient.pseudonym,
                "study_date": scan.study.study_date,
                "rows": scan.rows,
                "columns": scan.columns,
                "slices": scan.slices,
                "spacing": scan.spacing,
                "origin": scan.origin,
                "direction": scan.direction,
                "gaps": scan.gaps,
                "slice_positions": scan.slice_positions,
                "instances": list(scan.instances.order_by("index").values_list("sop_uid", flat=True)),
            }
        )


class BatchBuildIn(serializers.Serializer):
    scan_ids = serializers.ListField(child=row_id_field(), required=False)
    size = serializers.IntegerField(required=False, min_value=1, max_value=10_000)
    annotator_id = row_id_field(required=False, allow_null=True)
    auto_assign = serializers.BooleanField(default=False)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    institution_id = row_id_field(required=False)
    study_date_from = serializers.DateField(required=False)
    study_date_to = serializers.DateField(required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)


class BatchOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    campaign = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Batch.Status.choices)
    annotator = serializers.CharField(allow_null=True)
    annotator_id = serializers.IntegerField(allow_null=True)
    scan_ids = serializers.ListField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()


def batch_out(batch: Batch) -> dict:
    return {
        "id": batch.pk,
        "name": batch.name,
        "campaign": batch.campaign_id,
        "status": batch.status,
        "annotator": batch.annotator.username if batch.annotator else None,
        "annotator_id": batch.annotator_id,
        "scan_ids": list(batch.items.values_list("scan_id", flat=True)),
        "created_at": batch.created_at,
    }


def _user_or_400(user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise DomainError(f"no active user with id {user_id}", code="no_such_user")
    return user


class BatchListCreateApi(APIView):
    @extend_schema(responses=BatchOut(many=True), operation_id="batches_list")
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
        batches = batches_visible_to(request.user).filter(campaign=campaign).select_related("annotator")
        return Response([batch_out(b) for b in batches.order_by("pk")])

    @extend_schema(request=BatchBuildIn, responses={201: BatchOut}, operation_id="batch_build")
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = get_object_or_404(campaigns_visible_to(request.user), pk=campaign_id)
        data = BatchBuildIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        batch = batch_services.batch_build(
            actor=request.user,
            campaign=campaign,
            size=v.get("size"),
            scan_ids=v.get("scan_ids"),
            annotator=_user_or_400(v.get("annotator_id")),
            auto_assign=v["auto_assign"],
            name=v.get("name", ""),
            filters=batch_services.BatchFilters(
                institution_id=v.get("institution_id"),
                study_date_from=v.get("study_date_from"),
                study_date_to=v.get("study_date_to"),
                tags=v.get("tags"),
            ),
        )
        return Response(batch_out(batch), status=status.HTTP_201_CREATED)


class BatchAssignIn(serializers.Serializer):
    annotator_id = row_id_field(
        required=False, allow_null=True, help_text="omitted or null: the least-loaded annotator"
    )


class BatchAssignApi(APIView):
    @extend_schema(request=BatchAssignIn, responses=BatchOut, operation_id="batch_assign")
    def post(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(batches_visible_to(request.user), pk=batch_id)
        body = BatchAssignIn(data=request.data)
        body.is_valid(raise_exception=True)
        annotator_id = body.validated_data.get("annotator_id")
        if annotator_id is None:
            annotator = batch_services.annotator_least_loaded(batch.campaign)
        else:
            annotator = _user_or_400(annotator_id)
        return Response(
            batch_out(batch_services.batch_assign(actor=request.user, batch=batch, annotator=annotator))
        )


class BatchCloseApi(APIView):
    @extend_schema(request=None, responses=BatchOut, operation_id="batch_close")
    def post(self, request: Request, batch_id: int) -> Response:
        batch = get_object_or_404(batches_visible_to(request.user), pk=batch_id)
        return Response(batch_out(batch_services.batch_close(actor=request.user, batch=batch)))


class InstitutionListApi(APIView):
    @extend_schema(responses=InstitutionOut(many=True), operation_id="institutions_list")
    def get(self, request: Request) -> Response:
        return Response(
            [
                {"id": i.pk, "slug": i.slug, "name": i.name}
                for i in Institution.objects.filter(pk__in=institutions_of(request.user))
            ]
        )
