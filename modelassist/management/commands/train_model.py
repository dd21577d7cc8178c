"""manage.py train_model --campaign SLUG [--export N] [--epochs N] [--architecture NAME]:
run a training job now, in this process (the API queues it on the `train` workers instead)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from core.api_errors import DomainError
from core.models import Campaign
from modelassist.lazy import network
from modelassist.models import DatasetExport, JobStatus, TrainingTrigger
from modelassist.services.training import training_request, training_run_execute


class Command(BaseCommand):
    help = "Train the pre-segmentation model on a campaign's export; promote it if it beats the active one."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--campaign", required=True, help="campaign slug")
        parser.add_argument("--export", type=int, help="export version to train on (default: a new export)")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--max-minutes", type=float)
        parser.add_argument("--architecture", choices=sorted(network.ARCHITECTURES))

    def handle(self, *args, **options) -> None:
        try:
            campaign = Campaign.objects.get(slug=options["campaign"])
        except Campaign.DoesNotExist as exc:
            raise CommandError(f"no campaign with slug {options['campaign']!r}") from exc
        export = None
        if options["export"] is not None:
            export = DatasetExport.objects.filter(campaign=campaign, version=options["export"]).first()
            if export is None:
                raise CommandError(f"campaign {campaign.slug} has no export v{options['export']}")
        params = {
            k: options[o] for k, o in (("epochs", "epochs"), ("max_minutes", "max_minutes")) if options[o]
        }
        try:
            run = training_request(
                actor=None,
                campaign=campaign,
                export=export,
                params=params,
                architecture=options["architecture"],
                trigger=TrainingTrigger.MANUAL,
            )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        # The request's on-commit send is harmless (the task finds the run finished); run it here.
        run = training_run_execute(
            run.pk, lambda fraction, message: self.stderr.write(f"{fraction:5.0%} {message}")
        )
        if run.status != JobStatus.DONE:
            raise CommandError(f"training failed: {run.error}")
        self.stdout.write(
            json.dumps(
                {
                    "run": run.pk,
                    "model_version": run.model_version_id,
                    "promoted": run.promoted,
                    "decision": run.decision,
                    "test": run.metrics.get("candidate"),
                    "incumbent": run.metrics.get("incumbent"),
                },
                indent=2,
            )
        )
