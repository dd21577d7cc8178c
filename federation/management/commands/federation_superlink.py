"""Run a federation run's coordinator job in the foreground: the SuperLink and the ServerApp
(what the `train` worker's task does), e.g. in the compose `federation` profile's service."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from federation.models import FederationRun, RunStatus
from federation.services.runs import federation_run_execute


class Command(BaseCommand):
    help = "Run the SuperLink + ServerApp of a started (queued) federation run until it ends."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id: int, **options) -> None:
        run = FederationRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no federation run {run_id}")
        if run.status != RunStatus.QUEUED:
            raise CommandError(
                f"run {run_id} is {run.status}; start it first (POST /api/federation/runs/{run_id}/start/)"
            )
        run = federation_run_execute(run_id, worker="manage.py federation_superlink")
        self.stdout.write(f"federation run {run.pk}: {run.status} {run.error}".rstrip())
        if run.status != RunStatus.DONE:
            raise CommandError(run.error or run.status)
