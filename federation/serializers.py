"""Input and output shapes of the federation API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.api_fields import row_id_field
from federation.models import FederationRound, FederationRun, FederationSite, Strategy


class RunIn(serializers.Serializer):
    campaign = row_id_field(help_text="the coordinator's campaign whose label schema the run trains")
    name = serializers.CharField(max_length=100)
    superlink_address = serializers.CharField(
        max_length=200, help_text="host:port the sites reach the SuperLink at"
    )
    architecture = serializers.CharField(required=False, allow_blank=True)
    rounds = serializers.IntegerField(required=False, default=3)
    local_epochs = serializers.IntegerField(required=False, default=1)
    strategy = serializers.ChoiceField(choices=Strategy.choices, required=False, default=Strategy.FEDAVG)
    proximal_mu = serializers.FloatField(required=False, default=0.0)
    server_momentum = serializers.FloatField(
        required=False, default=0.9, help_text="FedAvgM's server momentum (FedAvgM only), 0 < m <= 0.99"
    )
    dp_enabled = serializers.BooleanField(required=False, default=False)
    dp_noise_multiplier = serializers.FloatField(required=False, default=0.0)
    dp_clipping_norm = serializers.FloatField(required=False, default=0.0)
    secagg_enabled = serializers.BooleanField(required=False, default=False)
    min_sites = serializers.IntegerField(required=False, default=2)
    train_params = serializers.DictField(required=False, default=dict)
    round_timeout_s = serializers.IntegerField(required=False, default=1800)
    tls_server_cert = serializers.CharField(required=False, allow_blank=True, default="")
    tls_server_key = serializers.CharField(required=False, allow_blank=True, default="")
    tls_ca_cert = serializers.CharField(required=False, allow_blank=True, default="")


class JoinIn(serializers.Serializer):
    key = serializers.UUIDField(help_text="the run's key, from the coordinator")
    export = row_id_field(help_text="a finished export of a campaign of your institution")
    start = serializers.BooleanField(required=False, default=True, help_text="start the site's SuperNode now")


class InvitationIn(serializers.Serializer):
    invitation = serializers.JSONField(
        help_text="the invitation the coordinator sent: its JSON object, or its text as pasted"
    )
    institution = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="slug of the institution that takes part (needed only if you manage several)",
    )


class LeaveIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class RoundOut(serializers.ModelSerializer):
    class Meta:
        model = FederationRound
        fields = [
            "number",
            "sample_count",
            "sent_bytes",
            "sent_sha256",
            "sent_to",
            "sent_at",
            "train_loss",
            "train_seconds",
            "global_sha256",
            "participants",
            "test_figures",
            "model_version",
            "promoted",
            "decision",
            "received_at",
        ]


class SiteOut(serializers.ModelSerializer):
    institution = serializers.CharField(source="institution.slug")
    export_version = serializers.IntegerField(source="export.version")

    class Meta:
        model = FederationSite
        fields = [
            "id",
            "run",
            "key",
            "institution",
            "campaign",
            "export",
            "export_version",
            "status",
            "message",
            "error",
            "joined_at",
            "left_at",
            "left_reason",
            "started_at",
            "finished_at",
        ]


class RunOut(serializers.ModelSerializer):
    institution = serializers.CharField(source="institution.slug")
    coordinator = serializers.SerializerMethodField(help_text="the coordinating institution's name")
    sites = serializers.SerializerMethodField()

    class Meta:
        model = FederationRun
        fields = [
            "id",
            "key",
            "institution",
            "is_remote",
            "coordinator",
            "name",
            "architecture",
            "rounds",
            "local_epochs",
            "train_params",
            "strategy",
            "proximal_mu",
            "server_momentum",
            "dp_enabled",
            "dp_noise_multiplier",
            "dp_clipping_norm",
            "secagg_enabled",
            "min_sites",
            "superlink_address",
            "round_timeout_s",
            "status",
            "progress",
            "message",
            "error",
            "history",
            "flower_run_id",
            "created_at",
            "started_at",
            "finished_at",
            "sites",
        ]

    def get_coordinator(self, run: FederationRun) -> str:
        return run.coordinator_name if run.is_remote else run.institution.name

    def get_sites(self, run: FederationRun) -> list[dict[str, Any]]:
        return SiteOut(run.sites.select_related("institution", "export"), many=True).data
