"""PACS API (data managers): remote PACS configuration, search and pull, label sends, the
listener's AE titles, recent imports. Mounted at /api/pacs/ (see api_urls.py)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import DomainError, id_param
from core.api_fields import row_id_field
from core.models import Campaign, Institution, Role, User
from core.selectors import institutions_of, scans_visible_to
from imaging.models import ImportJob
from imaging.serializers import ImportOut, import_out
from pacs import pulls, services
from pacs import remote as pacs
from pacs.models import PacsSend, PulledStudy, RemotePacs


def managed(user: User) -> QuerySet[Institution]:
    return institutions_of(user, Role.DATA_MANAGER)


def remote_for_user(user: User, remote_id: int) -> RemotePacs:
    return get_object_or_404(RemotePacs.objects.filter(institution__in=managed(user)), pk=remote_id)


class RemoteIn(serializers.Serializer):
    institution_id = row_id_field(required=False)
    name = serializers.CharField(max_length=100, required=False)
    dicomweb_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    auth_type = serializers.ChoiceField(choices=RemotePacs.Auth.choices, required=False)
    username = serializers.CharField(max_length=150, required=False, allow_blank=True)
    secret = serializers.CharField(max_length=500, required=False, allow_blank=True, write_only=True)
    ae_title = serializers.CharField(max_length=16, required=False, allow_blank=True)
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    port = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=65535)
    send_method = serializers.ChoiceField(
        choices=RemotePacs.SendMethod.choices, required=False, allow_blank=True
    )
    send_on_approval = serializers.BooleanField(required=False)
    pull_filter = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    pull_interval_minutes = serializers.IntegerField(required=False, min_value=0, max_value=7 * 24 * 60)
    pull_campaign_id = row_id_field(required=False, allow_null=True)


class RemoteOut(serializers.Serializer):
    id = serializers.IntegerField()
    institution_id = serializers.IntegerField()
    name = serializers.CharField()
    dicomweb_url = serializers.CharField()
    auth_type = serializers.ChoiceField(choices=RemotePacs.Auth.choices)
    username = serializers.CharField()
    has_secret = serializers.BooleanField(help_text="the secret itself is never sent back")
    ae_title = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField(allow_null=True)
    send_method = serializers.CharField()
    send_on_approval = serializers.BooleanField()
    pull_filter = serializers.DictField(child=serializers.CharField())
    pull_interval_minutes = serializers.IntegerField()
    pull_campaign_id = serializers.IntegerField(allow_null=True)
    last_pull_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


def remote_out(remote: RemotePacs) -> dict:
    return {
        "id": remote.pk,
        "institution_id": remote.institution_id,
        "name": remote.name,
        "dicomweb_url": remote.dicomweb_url,
        "auth_type": remote.auth_type,
        "username": remote.username,
        "has_secret": remote.has_secret,  # the secret itself is never sent back
        "ae_title": remote.ae_title,
        "host": remote.host,
        "port": remote.port,
        "send_method": remote.send_method,
        "send_on_approval": remote.send_on_approval,
        "pull_filter": remote.pull_filter,
        "pull_interval_minutes": remote.pull_interval_minutes,
        "pull_campaign_id": remote.pull_campaign_id,
        "last_pull_at": remote.last_pull_at,
        "created_at": remote.created_at,
    }


def _remote_data(user: User, validated: dict) -> dict:
    data = {k: v for k, v in validated.items() if k not in ("institution_id", "pull_campaign_id")}
    if "pull_campaign_id" in validated:
        cid = validated["pull_campaign_id"]
        data["pull_campaign"] = None if cid is None else get_object_or_404(Campaign, pk=cid)
    return data


class RemoteListApi(APIView):
    @extend_schema(responses=RemoteOut(many=True), operation_id="pacs_remotes_list")
    def get(self, request: Request) -> Response:
        remotes = RemotePacs.objects.filter(institution__in=managed(request.user))
        return Response([remote_out(r) for r in remotes])

    @extend_schema(request=RemoteIn, responses={201: RemoteOut}, operation_id="pacs_remote_create")
    def post(self, request: Request) -> Response:
        body = RemoteIn(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        institutions = managed(request.user)
        if "institution_id" in v:
            institution = get_object_or_404(institutions, pk=v["institution_id"])
        elif institutions.count() == 1:
            institution = institutions.get()
        else:
            raise DomainError("name the institution (institution_id)", code="no_institution")
        if "name" not in v:
            raise DomainError("give the PACS a name", code="invalid")
        remote = services.remote_save(
            actor=request.user, institution=institution, data=_remote_data(request.user, v)
        )
        return Response(remote_out(remote), status=status.HTTP_201_CREATED)


class RemoteDetailApi(APIView):
    @extend_schema(responses=RemoteOut, operation_id="pacs_remote_retrieve")
    def get(self, request: Request, remote_id: int) -> Response:
        return Response(remote_out(remote_for_user(request.user, remote_id)))

    @extend_schema(request=RemoteIn, responses=RemoteOut, operation_id="pacs_remote_update")
    def patch(self, request: Request, remote_id: int) -> Response:
        remote = remote_for_user(request.user, remote_id)
        body = RemoteIn(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        remote = services.remote_save(
            actor=request.user,
            institution=remote.institution,
            data=_remote_data(request.user, body.validated_data),
            remote=remote,
        )
        return Response(remote_out(remote))

    @extend_schema(responses={204: None}, operation_id="pacs_remote_delete")
    def delete(self, request: Request, remote_id: int) -> Response:
        services.remote_delete(actor=request.user, remote=remote_for_user(request.user, remote_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EchoResultOut(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField(required=False)


class EchoOut(serializers.Serializer):
    dicomweb = EchoResultOut(required=False)
    dimse = EchoResultOut(required=False)


class RemoteEchoApi(APIView):
    """Test the connection: a QIDO-RS search (DICOMweb) and a C-ECHO (DIMSE), where configured."""

    @extend_schema(request=None, responses=EchoOut, operation_id="pacs_remote_echo")
    def post(self, request: Request, remote_id: int) -> Response:
        remote = remote_for_user(request.user, remote_id)
        out = {}
        if remote.dicomweb_url:
            try:
                pacs.search_studies(remote, {}, limit=1)
                out["dicomweb"] = {"ok": True}
            except pacs.RemoteError as exc:
                out["dicomweb"] = {"ok": False, "detail": str(exc)}
        if remote.host and remote.port and remote.ae_title:
            try:
                pacs.echo(remote)
                out["dimse"] = {"ok": True}
            except pacs.RemoteError as exc:
                out["dimse"] = {"ok": False, "detail": str(exc)}
        return Response(out)


def _first(item: dict, tag: str) -> object:
    values = item.get(tag, {}).get("Value") or [None]
    first = values[0]
    if isinstance(first, dict):
        return first.get("Alphabetic")
    return first


def study_summary(item: dict, pulled: dict[str, PulledStudy]) -> dict:
    uid = _first(item, "0020000D")
    modalities = item.get("00080061", {}).get("Value") or []
    done = pulled.get(uid)
    return {
        "study_uid": uid,
        "patient_id": _first(item, "00100020"),
        "patient_name": _first(item, "00100010"),
        "study_date": _first(item, "00080020"),
        "study_description": _first(item, "00081030"),
        "accession_number": _first(item, "00080050"),
        "modalities": modalities,
        "series": _first(item, "00201206"),
        "instances": _first(item, "00201208"),
        "pulled": None
        if done is None
        else {
            "status": done.status,
            "import_job_id": done.import_job_id,
            "detail": done.detail,
        },
        "dicom": item,  # the PACS's own DICOM JSON, passed through
    }


class PulledOut(serializers.Serializer):
    status = serializers.CharField()
    import_job_id = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


class StudySummaryOut(serializers.Serializer):
    study_uid = serializers.CharField(allow_null=True)
    patient_id = serializers.CharField(allow_null=True)
    patient_name = serializers.CharField(allow_null=True)
    study_date = serializers.CharField(allow_null=True)
    study_description = serializers.CharField(allow_null=True)
    accession_number = serializers.CharField(allow_null=True)
    modalities = serializers.ListField(child=serializers.CharField())
    series = serializers.IntegerField(allow_null=True)
    instances = serializers.IntegerField(allow_null=True)
    pulled = PulledOut(allow_null=True)
    dicom = serializers.DictField(help_text="the PACS's own DICOM JSON")


class StudySearchOut(serializers.Serializer):
    results = StudySummaryOut(many=True)
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class RemoteStudySearchApi(APIView):
    """QIDO-RS pass-through: query parameters go to the PACS as they are (limit, offset and DICOM
    keywords or tags, e.g. PatientID=123&StudyDate=20200101-20201231&ModalitiesInStudy=CT)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="1..500, default 50"),
            OpenApiParameter("offset", int),
        ],
        responses=StudySearchOut,
        operation_id="pacs_remote_studies",
    )
    def get(self, request: Request, remote_id: int) -> Response:
        remote = remote_for_user(request.user, remote_id)
        try:
            limit = min(500, max(1, int(request.query_params.get("limit", 50))))
            offset = max(0, int(request.query_params.get("offset", 0)))
        except ValueError as exc:
            raise DomainError("limit and offset must be integers") from exc
        filters = {k: v for k, v in request.query_params.items() if k not in ("limit", "offset") and v != ""}
        try:
            found = pacs.search_studies(remote, filters, limit=limit, offset=offset)
        except pacs.RemoteError as exc:
            raise DomainError(str(exc), code="remote_error") from exc
        uids = [_first(s, "0020000D") for s in found]
        pulled = {p.study_uid: p for p in PulledStudy.objects.filter(remote=remote, study_uid__in=uids)}
        return Response(
            {"results": [study_summary(s, pulled) for s in found], "limit": limit, "offset": offset}
        )


class SeriesSummaryOut(serializers.Serializer):
    series_uid = serializers.CharField(allow_null=True)
    modality = serializers.CharField(allow_null=True)
    series_number = serializers.IntegerField(allow_null=True)
    series_description = serializers.CharField(allow_null=True)
    instances = serializers.IntegerField(allow_null=True)
    dicom = serializers.DictField()


class SeriesSearchOut(serializers.Serializer):
    results = SeriesSummaryOut(many=True)


class RemoteSeriesSearchApi(APIView):
    @extend_schema(responses=SeriesSearchOut, operation_id="pacs_remote_series")
    def get(self, request: Request, remote_id: int, study_uid: str) -> Response:
        remote = remote_for_user(request.user, remote_id)
        try:
            found = pacs.search_series(remote, study_uid)
        except pacs.RemoteError as exc:
            raise DomainError(str(exc), code="remote_error") from exc
        return Response(
            {
                "results": [
                    {
                        "series_uid": _first(s, "0020000E"),
                        "modality": _first(s, "00080060"),
                        "series_number": _first(s, "00200011"),
                        "series_description": _first(s, "0008103E"),
                        "instances": _first(s, "00201209"),
                        "dicom": s,
                    }
                    for s in found
                ]
            }
        )


class PullIn(serializers.Serializer):
    study_uids = serializers.ListField(
        child=serializers.CharField(max_length=64), min_length=1, max_length=500
    )
    campaign_id = row_id_field(required=False, allow_null=True)


class RemotePullApi(APIView):
    """Import studies of the PACS: an ImportJob (GET /api/imports/{id}/ for progress and report)."""

    @extend_schema(request=PullIn, responses={202: ImportOut}, operation_id="pacs_remote_pull")
    def post(self, request: Request, remote_id: int) -> Response:
        remote = remote_for_user(request.user, remote_id)
        body = PullIn(data=request.data)
        body.is_valid(raise_exception=True)
        campaign = None
        if body.validated_data.get("campaign_id"):
            campaign = get_object_or_404(
                Campaign.objects.filter(institution=remote.institution), pk=body.validated_data["campaign_id"]
            )
        job = pulls.pull_start(
            actor=request.user, remote=remote, study_uids=body.validated_data["study_uids"], campaign=campaign
        )
        return Response(import_out(job), status=status.HTTP_202_ACCEPTED)


class SendOut(serializers.Serializer):
    id = serializers.IntegerField()
    remote_id = serializers.IntegerField()
    remote = serializers.CharField()
    scan_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField(allow_null=True)
    revision_id = serializers.IntegerField(allow_null=True)
    trigger = serializers.ChoiceField(choices=PacsSend.Trigger.choices)
    method = serializers.CharField()
    status = serializers.ChoiceField(choices=PacsSend.Status.choices)
    seg_sop_uid = serializers.CharField()
    detail = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


def send_out(send: PacsSend) -> dict:
    return {
        "id": send.pk,
        "remote_id": send.remote_id,
        "remote": send.remote.name,
        "scan_id": send.scan_id,
        "campaign_id": send.campaign_id,
        "revision_id": send.revision_id,
        "trigger": send.trigger,
        "method": send.method,
        "status": send.status,
        "seg_sop_uid": send.seg_sop_uid,
        "detail": send.detail,
        "created_at": send.created_at,
        "finished_at": send.finished_at,
    }


class SendIn(serializers.Serializer):
    remote_id = row_id_field(required=False, allow_null=True)
    campaign_id = row_id_field(required=False, allow_null=True)


class ScanSendApi(APIView):
    """Send the scan's curated labels, as DICOM SEG, to its institution's PACS (in the background)."""

    @extend_schema(request=SendIn, responses={202: SendOut}, operation_id="pacs_scan_send")
    def post(self, request: Request, scan_id: int) -> Response:
        scan = get_object_or_404(
            scans_visible_to(request.user)
            .filter(study__institution__in=managed(request.user))
            .select_related("study"),
            pk=scan_id,
        )
        body = SendIn(data=request.data)
        body.is_valid(raise_exception=True)
        remote = campaign = None
        if body.validated_data.get("remote_id"):
            remote = remote_for_user(request.user, body.validated_data["remote_id"])
        if body.validated_data.get("campaign_id"):
            campaign = get_object_or_404(Campaign, pk=body.validated_data["campaign_id"])
        send = services.send_request(actor=request.user, scan=scan, remote=remote, campaign=campaign)
        return Response(send_out(send), status=status.HTTP_202_ACCEPTED)


class SendListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("scan", int, description="only the sends of this scan")],
        responses=SendOut(many=True),
        operation_id="pacs_sends_list",
    )
    def get(self, request: Request) -> Response:
        sends = PacsSend.objects.filter(remote__institution__in=managed(request.user)).select_related(
            "remote"
        )
        if request.query_params.get("scan"):
            sends = sends.filter(scan_id=id_param(request.query_params["scan"], "scan"))
        return Response([send_out(s) for s in sends[:200]])


class SendDetailApi(APIView):
    @extend_schema(responses=SendOut, operation_id="pacs_send_retrieve")
    def get(self, request: Request, send_id: int) -> Response:
        send = get_object_or_404(
            PacsSend.objects.filter(remote__institution__in=managed(request.user)).select_related("remote"),
            pk=send_id,
        )
        return Response(send_out(send))


class ImportListOut(ImportOut):
    source = serializers.CharField()
    institution_id = serializers.IntegerField()


class ImportListApi(APIView):
    """Recent imports of the managed institutions (uploads, STOW-RS, C-STORE, pulls), newest first."""

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=["cstore", "stow", "pull"])],
        responses=ImportListOut(many=True),
        operation_id="pacs_imports_list",
    )
    def get(self, request: Request) -> Response:
        jobs = ImportJob.objects.filter(institution__in=managed(request.user)).order_by("-created_at", "-pk")
        kind = request.query_params.get("kind")
        prefixes = {"cstore": "DICOM C-STORE", "stow": "DICOMweb STOW-RS", "pull": "DICOMweb pull"}
        if kind in prefixes:
            jobs = jobs.filter(source__startswith=prefixes[kind])
        return Response(
            [{**import_out(j), "source": j.source, "institution_id": j.institution_id} for j in jobs[:100]]
        )


class AeTitlesIn(serializers.Serializer):
    allowed_ae_titles = serializers.ListField(
        child=serializers.CharField(max_length=16, allow_blank=False), max_length=50
    )


class AeTitlesOut(serializers.Serializer):
    institution_id = serializers.IntegerField()
    allowed_ae_titles = serializers.ListField(child=serializers.CharField())


class InstitutionAeTitlesApi(APIView):
    """The calling AE titles from which the institution's PACS may send to the C-STORE listener."""

    @extend_schema(responses=AeTitlesOut, operation_id="pacs_ae_titles_retrieve")
    def get(self, request: Request, institution_id: int) -> Response:
        institution = get_object_or_404(managed(request.user), pk=institution_id)
        return Response(
            {"institution_id": institution.pk, "allowed_ae_titles": institution.allowed_ae_titles}
        )

    @extend_schema(request=AeTitlesIn, responses=AeTitlesOut, operation_id="pacs_ae_titles_set")
    def put(self, request: Request, institution_id: int) -> Response:
        institution = get_object_or_404(managed(request.user), pk=institution_id)
        body = AeTitlesIn(data=request.data)
        body.is_valid(raise_exception=True)
        institution = services.institution_ae_titles_set(
            actor=request.user, institution=institution, titles=body.validated_data["allowed_ae_titles"]
        )
        return Response(
            {"institution_id": institution.pk, "allowed_ae_titles": institution.allowed_ae_titles}
        )
