"""Federation runs, the sites that take part in them, and what each round did at each site.

A run and a site are jobs of core.jobs (one transition table each, changed only through its
services): the run is the coordinator's SuperLink + ServerApp, a site is one SuperNode serving
the run from the site's `train` worker.
"""

from __future__ import annotations

import uuid

from django.db import models

from core.jobs.models import Job
from core.models import Campaign, Institution, User
from modelassist.models import DatasetExport, ModelVersion


class Strategy(models.TextChoices):
    FEDAVG = "fedavg", "FedAvg"  # sample-weighted mean of the sites' parameters
    FEDPROX = (
        "fedprox",
        "FedProx",
    )  # FedAvg with a proximal term that keeps local training near the global model
    # FedAvg whose mean update is a step of server-side SGD with momentum (Hsu et al. 2019),
    # started in round 2 (federation.flower.momentum).
    FEDAVGM = "fedavgm", "FedAvgM"


class RunStatus(models.TextChoices):
    OPEN = "open", "Open"  # declared; sites may join; not started
    QUEUED = "queued", "Queued"  # started by the coordinator; its task is on its way
    RUNNING = "running", "Running"  # the SuperLink is up and the ServerApp runs the rounds
    DONE = "done", "Done"  # every round ran; the sites got each round's global model
    FAILED = "failed", "Failed"  # stopped; `error` says why (cancelled, too few sites, a crash)


class FederationRun(Job):
    """A federation run declared by the coordinating data manager: what is trained, how, where."""

    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)  # what sites join by
    # The coordinator; for a run coordinated elsewhere, the institution here that imported its
    # invitation (the one installation-local owner every scoped query needs).
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    # A participant copy made from another installation's invitation: its SuperLink and
    # ServerApp run there, so it is never started or cancelled here; only its sites serve it.
    is_remote = models.BooleanField(default=False)
    coordinator_name = models.CharField(max_length=200, blank=True)  # the coordinating institution's name
    invitation_issued_at = models.DateTimeField(null=True, blank=True)  # sites may join elsewhere
    name = models.CharField(max_length=100)
    label_schema = models.JSONField(default=dict)  # every site's campaign must have these lesion classes
    architecture = models.CharField(max_length=50)
    rounds = models.PositiveSmallIntegerField(default=3)
    local_epochs = models.PositiveSmallIntegerField(default=1)
    # lr, batch_size, slices_per_case, crop, seed: the local training of every site
    train_params = models.JSONField(default=dict, blank=True)
    strategy = models.CharField(max_length=10, choices=Strategy.choices, default=Strategy.FEDAVG)
    proximal_mu = models.FloatField(default=0.0)  # FedProx only
    server_momentum = models.FloatField(default=0.0)  # FedAvgM only
    dp_enabled = models.BooleanField(default=False)  # client-side clipping + Gaussian noise
    dp_noise_multiplier = models.FloatField(default=0.0)
    dp_clipping_norm = models.FloatField(default=0.0)
    secagg_enabled = models.BooleanField(default=False)  # Flower's SecAgg+ (the server sees only the sum)
    min_sites = models.PositiveSmallIntegerField(default=2)
    # The SuperLink's Fleet API as the sites reach it (host:port); its control API stays local.
    superlink_address = models.CharField(max_length=200)
    # TLS, optional: without it only a loopback address is accepted.
    tls_ca_cert = models.CharField(max_length=500, blank=True)  # the sites verify the SuperLink with it
    tls_server_cert = models.CharField(max_length=500, blank=True)
    tls_server_key = models.CharField(max_length=500, blank=True)
    round_timeout_s = models.PositiveIntegerField(default=1800)
    flower_run_id = models.CharField(max_length=40, blank=True)
    history = models.JSONField(default=list, blank=True)  # per round: participants, samples, bytes
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.OPEN)

    job_transitions = {
        RunStatus.OPEN: frozenset({RunStatus.QUEUED, RunStatus.FAILED}),
        RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED}),
        RunStatus.RUNNING: frozenset({RunStatus.DONE, RunStatus.FAILED}),
        RunStatus.DONE: frozenset(),
        RunStatus.FAILED: frozenset(),
    }
    job_audit_action = "federation_run"
    job_task = "federation.tasks.federation_run_coordinate"

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"Federation run {self.pk} ({self.name})"


class SiteStatus(models.TextChoices):
    JOINED = "joined", "Joined"  # takes part with its export; its SuperNode is not started yet
    QUEUED = "queued", "Queued"  # its SuperNode task is on its way to the site's train worker
    RUNNING = "running", "Running"  # its SuperNode serves the run
    DONE = "done", "Done"  # served every round of the run
    LEFT = "left", "Left"  # its data manager took it out; its SuperNode stopped; nothing more leaves
    FAILED = "failed", "Failed"  # its SuperNode stopped on an error; `error` says why


class FederationSite(Job):
    """One site's part in a run: which curated export of which campaign trains, and its SuperNode."""

    run = models.ForeignKey(FederationRun, on_delete=models.CASCADE, related_name="sites")
    # What the site's ClientApp names itself by to the coordinator (beside its institution's
    # name): a site's pk means nothing in another installation's database.
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="+"
    )  # gets the model versions
    export = models.ForeignKey(DatasetExport, on_delete=models.PROTECT, related_name="+")
    joined_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    joined_at = models.DateTimeField(auto_now_add=True)
    left_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    left_at = models.DateTimeField(null=True, blank=True)
    left_reason = models.CharField(max_length=300, blank=True)

    status = models.CharField(max_length=10, choices=SiteStatus.choices, default=SiteStatus.JOINED)

    job_transitions = {
        SiteStatus.JOINED: frozenset({SiteStatus.QUEUED, SiteStatus.LEFT}),
        SiteStatus.QUEUED: frozenset({SiteStatus.RUNNING, SiteStatus.LEFT, SiteStatus.FAILED}),
        SiteStatus.RUNNING: frozenset({SiteStatus.DONE, SiteStatus.LEFT, SiteStatus.FAILED}),
        SiteStatus.DONE: frozenset(),
        SiteStatus.LEFT: frozenset(),
        SiteStatus.FAILED: frozenset(),
    }
    job_done_status = SiteStatus.DONE
    job_audit_action = "federation_site"
    job_task = "federation.tasks.federation_site_serve"

    class Meta:
        ordering = ["run_id", "pk"]
        constraints = [models.UniqueConstraint(fields=["run", "institution"], name="uniq_federation_site")]

    def __str__(self) -> str:
        return f"Site {self.institution_id} of federation run {self.run_id}"


class FederationRound(models.Model):
    """One round at one site: what left it (its update) and what came back (the global model,
    registered as a model version, with the site's own test figures and promotion decision)."""

    site = models.ForeignKey(FederationSite, on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveSmallIntegerField()
    # What left: the update's size and sha256, its sample count, to which coordinator, when.
    sample_count = models.PositiveIntegerField(null=True, blank=True)
    sent_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sent_sha256 = models.CharField(max_length=64, blank=True)
    sent_to = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    train_loss = models.FloatField(null=True, blank=True)
    train_seconds = models.FloatField(null=True, blank=True)
    # What came back: the round's global model at this site.
    global_sha256 = models.CharField(max_length=64, blank=True)
    participants = models.JSONField(default=list, blank=True)  # [{"site", "institution", "samples"}]
    test_figures = models.JSONField(default=dict, blank=True)  # the site's own test split
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    promoted = models.BooleanField(null=True, blank=True)
    decision = models.TextField(blank=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site_id", "number"]
        constraints = [models.UniqueConstraint(fields=["site", "number"], name="uniq_federation_round")]
