"""Federation API: declare, start and cancel a run (coordinator); join, start and leave it
(site); read runs, sites and each site's rounds (its outgoing log). Thin: parse, call a
service or selector, shape output. Another institution's run or site answers 404."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import DomainError, NotFound
from core.models import Campaign
from federation import selectors
from federation import serializers as s
from federation.services import invitations, runs, sites
from modelassist.models import DatasetExport


def _in(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class RunListApi(APIView):
    @extend_schema(responses=s.RunOut(many=True), operation_id="federation_runs_list")
    def get(self, request: Request) -> Response:
        return Response(s.RunOut(selectors.runs_visible_to(request.user).order_by("-pk"), many=True).data)

    @extend_schema(request=s.RunIn, responses={201: s.RunOut}, operation_id="federation_run_declare")
    def post(self, request: Request) -> Response:
        data = _in(s.RunIn, request)
        campaign = Campaign.objects.filter(
            pk=data.pop("campaign"), institution__in=selectors.managed_institutions(request.user)
        ).first()
        if campaign is None:
            raise NotFound("no campaign of an institution you manage has this id", code="not_found")
        run = runs.federation_run_declare(
            actor=request.user, institution=campaign.institution, campaign=campaign, **data
        )
        return Response(s.RunOut(run).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    @extend_schema(responses=s.RunOut, operation_id="federation_run_retrieve")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(s.RunOut(selectors.run_for_user(request.user, run_id)).data)


class RunStartApi(APIView):
    @extend_schema(request=None, responses={202: s.RunOut}, operation_id="federation_run_start")
    def post(self, request: Request, run_id: int) -> Response:
        run = runs.federation_run_start(actor=request.user, run=selectors.run_for_user(request.user, run_id))
        return Response(s.RunOut(run).data, status=status.HTTP_202_ACCEPTED)


class RunCancelApi(APIView):
    @extend_schema(request=s.LeaveIn, responses=s.RunOut, operation_id="federation_run_cancel")
    def post(self, request: Request, run_id: int) -> Response:
        reason = _in(s.LeaveIn, request)["reason"]
        run = runs.federation_run_cancel(
            actor=request.user, run=selectors.run_for_user(request.user, run_id), reason=reason
        )
        return Response(s.RunOut(run).data)


class RunInvitationApi(APIView):
    """The run's invitation for sites of other installations (the coordinator's data managers)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="federation_run_invitation")
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.run_for_user(request.user, run_id)
        document = invitations.federation_invitation_issue(actor=request.user, run=run)
        response = Response(document)
        response["Content-Disposition"] = f'attachment; filename="curatect-invitation-run-{run.pk}.json"'
        return response


class InvitationImportApi(APIView):
    """A site imports another installation's invitation: a participant copy of the run here."""

    @extend_schema(
        request=s.InvitationIn, responses={201: s.RunOut}, operation_id="federation_invitation_import"
    )
    def post(self, request: Request) -> Response:
        data = _in(s.InvitationIn, request)
        run = invitations.federation_invitation_import(
            actor=request.user,
            institution=_importing_institution(request, data["institution"]),
            invitation=data["invitation"],
        )
        return Response(s.RunOut(run).data, status=status.HTTP_201_CREATED)


def _importing_institution(request: Request, slug: str):
    managed = selectors.managed_institutions(request.user)
    if slug:
        found = managed.filter(slug=slug).first()
        if found is None:
            raise NotFound("you manage no institution with this slug", code="not_found")
        return found
    found = list(managed[:2])
    if not found:
        raise NotFound("only data managers import federation invitations", code="not_found")
    if len(found) > 1:
        raise DomainError(
            "you manage several institutions: say which one takes part (institution: its slug)",
            code="institution_required",
        )
    return found[0]


class SiteJoinApi(APIView):
    @extend_schema(request=s.JoinIn, responses={201: s.SiteOut}, operation_id="federation_site_join")
    def post(self, request: Request) -> Response:
        data = _in(s.JoinIn, request)
        run = selectors.run_by_key_for_user(request.user, str(data["key"]))
        export = (
            DatasetExport.objects.filter(
                pk=data["export"], campaign__institution__in=selectors.managed_institutions(request.user)
            )
            .select_related("campaign")
            .first()
        )
        if export is None:
            raise NotFound(
                "no export of a campaign of an institution you manage has this id", code="not_found"
            )
        site = sites.federation_site_join(actor=request.user, run=run, export=export)
        if data["start"]:
            site = sites.federation_site_start(actor=request.user, site=site)
        return Response(s.SiteOut(site).data, status=status.HTTP_201_CREATED)


def _own_site(request: Request, site_id: int):
    site = (
        selectors.own_sites(request.user)
        .select_related("run", "institution", "export")
        .filter(pk=site_id)
        .first()
    )
    if site is None:
        raise NotFound("no such federation site", code="not_found")
    return site


class SiteDetailApi(APIView):
    @extend_schema(responses=s.SiteOut, operation_id="federation_site_retrieve")
    def get(self, request: Request, site_id: int) -> Response:
        return Response(s.SiteOut(selectors.site_for_user(request.user, site_id)).data)


class SiteStartApi(APIView):
    @extend_schema(request=None, responses={202: s.SiteOut}, operation_id="federation_site_start")
    def post(self, request: Request, site_id: int) -> Response:
        site = sites.federation_site_start(actor=request.user, site=_own_site(request, site_id))
        return Response(s.SiteOut(site).data, status=status.HTTP_202_ACCEPTED)


class SiteLeaveApi(APIView):
    @extend_schema(request=s.LeaveIn, responses=s.SiteOut, operation_id="federation_site_leave")
    def post(self, request: Request, site_id: int) -> Response:
        reason = _in(s.LeaveIn, request)["reason"]
        site = sites.federation_site_leave(
            actor=request.user, site=_own_site(request, site_id), reason=reason
        )
        return Response(s.SiteOut(site).data)


class SiteRoundsApi(APIView):
    """The site's rounds: what left it and what came back (only the site's own data managers)."""

    @extend_schema(responses=s.RoundOut(many=True), operation_id="federation_site_rounds")
    def get(self, request: Request, site_id: int) -> Response:
        site = _own_site(request, site_id)
        return Response(s.RoundOut(selectors.rounds_of_site(site), many=True).data)
