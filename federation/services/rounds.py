"""What each round does at a site, written by the site's ClientApp: what left (the update, its
size and sha256, the sample count, to which coordinator, when, under which run) and what came
back (the round's global model, registered as a model version with its lineage and the site's
own test figures, promoted by the site's own rule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.api_errors import DomainError
from core.services.audit import audit_record
from federation import classifier as scan_classifier
from federation import training
from federation.models import FederationRound, FederationSite, SiteStatus
from federation.services.sites import federation_site_done
from modelassist.lazy import classifier_net, network
from modelassist.models import ModelVersion, Split
from modelassist.selectors import active_model_version, media_path
from modelassist.services import evaluation, model_versions, splits
from modelassist.services.training import promotion_decide


def site_serving(site_id: int, run_key: str) -> FederationSite:
    """The site a SuperNode serves, refusing work for another run or after the site left:
    nothing leaves a site that is not taking part."""
    site = FederationSite.objects.select_related("run", "campaign", "export").get(pk=site_id)
    if str(site.run.key) != run_key:
        raise DomainError(f"this site serves federation run {site.run.key}, not {run_key}", code="wrong_run")
    if site.status != SiteStatus.RUNNING:
        raise DomainError(
            f"this site is {site.status} in run {site.run_id}; it takes no part", code="not_serving"
        )
    return site


def federation_round_sent(
    *,
    site: FederationSite,
    number: int,
    sample_count: int,
    sent_bytes: int,
    sent_sha256: str,
    sent_to: str,
    train_loss: float | None,
    train_seconds: float | None,
    clipping_norm: float | None = None,
    masked: dict[str, Any] | None = None,
) -> FederationRound:
    """The governance record of an update leaving the site (written as it leaves). With secure
    aggregation what leaves is the masked vector: `masked` says so, with the digest of the
    unmasked update, which stays at the site."""
    now = timezone.now()
    with transaction.atomic():
        row, _ = FederationRound.objects.update_or_create(
            site=site,
            number=number,
            defaults={
                "sample_count": sample_count,
                "sent_bytes": sent_bytes,
                "sent_sha256": sent_sha256,
                "sent_to": sent_to,
                "sent_at": now,
                "train_loss": train_loss,
                "train_seconds": train_seconds,
            },
        )
        run = site.run
        audit_record(
            actor=None,
            actor_label="federation ClientApp",
            action="federation_update_sent",
            obj=row,
            campaign=site.campaign_id,
            run=run.pk,
            run_key=str(run.key),
            round=number,
            what=_SENT_MASKED if masked else _SENT_PLAIN,
            bytes=sent_bytes,
            sha256=sent_sha256,
            sample_count=sample_count,
            coordinator=sent_to,
            at=now.isoformat(),
            export=site.export.version,
            dp={"clipping_norm": clipping_norm, "noise_multiplier": run.dp_noise_multiplier}
            if run.dp_enabled
            else None,
            secagg=masked,
        )
    return row


_SENT_PLAIN = (
    "model parameters (an ArrayRecord: the segmenter's and, when the run trains one, the scan classifier's), "
    "the training sample count, and this site's key and institution name"
)
_SENT_MASKED = (
    "the masked model parameters (SecAgg+: weighted by the sample count, quantised and masked, so the "
    "coordinator can unmask only the sum of all sites' updates) and the training sample count; in the "
    "protocol's other stages this site also sent its public keys, its key shares encrypted for the other "
    "sites, and the shares that unmask the sum"
)


@dataclass
class Received:
    round: FederationRound
    version: ModelVersion
    figures: dict[str, Any]


def federation_round_received(
    *,
    site: FederationSite,
    number: int,
    state: Mapping[str, Any],
    arrays: Sequence[Any],
    participants: list[dict[str, Any]],
    cases: Mapping[str, Sequence[training.Case]] | None = None,
    classifier_data: scan_classifier.ClassifierData | None = None,
) -> Received:
    """Register the round's global model at the site as a model version (lineage in its
    metrics and its file's meta), test it on the site's own test split against the site's
    active model, and promote it only by the site's rule (retraining's: it must beat it).
    When the run trains the scan classifier, its global classifier is tested and kept with the
    version too, and the rule covers both models as retraining's does."""
    run = site.run
    size, digest = training.arrays_digest(arrays)
    segmenter_state, classifier_state = scan_classifier.split_state(state)
    model = training.model_from_state(run.architecture, segmenter_state)
    cases = cases if cases is not None else training.load_cases(site.export)
    test = list(cases[Split.TEST])
    candidate = training.evaluate_cases(model, test)
    incumbent_version = active_model_version(site.campaign)
    incumbent = evaluation.evaluate_incumbent(incumbent_version, test)
    lineage = {
        "federation_run": run.pk,
        "federation_run_key": str(run.key),
        "round": number,
        "rounds": run.rounds,
        "strategy": run.strategy,
        "participants": participants,
        "parameter_sha256": digest,
        "parameter_bytes": size,
        "coordinator": run.superlink_address,
        "secure_aggregation": "SecAgg+" if run.secagg_enabled else None,
        "dp": {"noise_multiplier": run.dp_noise_multiplier, "clipping_norm": run.dp_clipping_norm}
        if run.dp_enabled
        else None,
    }
    metrics: dict[str, Any] = {
        "test_cases": len(test),
        "candidate": candidate,
        "incumbent": {
            "label": incumbent_version.label if incumbent_version else "baseline",
            "model_version_id": incumbent_version.pk if incumbent_version else None,
            **incumbent,
        },
        "federation": lineage,
        "tested_on": "this site's own test split",
    }
    if len(test) < splits.min_test_cases():
        metrics["needs_more_scans"] = splits.more_scans_for_test(len(test))
    classifier_relative = _classifier_step(
        site, classifier_state, cases, classifier_data, incumbent_version, metrics, lineage
    )
    relative = model_versions.new_model_path(site.campaign)
    network.save_model(model, media_path(relative), {"campaign": site.campaign.slug, "federation": lineage})
    version = model_versions.model_version_register(
        campaign=site.campaign,
        name=f"federation-{run.pk}-round-{number}",
        file_path=relative,
        trained_on=site.export,
        metrics=metrics,
        classifier_file_path=classifier_relative,
    )
    promoted, decision = promotion_decide(
        site,
        site.export,
        version,
        metrics,
        incumbent_version,
        activation_reason=f"federation run {run.pk}, round {number}",
    )
    with transaction.atomic():
        row, _ = FederationRound.objects.update_or_create(
            site=site,
            number=number,
            defaults={
                "global_sha256": digest,
                "participants": participants,
                "test_figures": {
                    "test_cases": len(test),
                    "candidate": candidate,
                    "incumbent": metrics["incumbent"],
                    "classifier": _classifier_summary(metrics["classifier"]),
                },
                "model_version": version,
                "promoted": promoted,
                "decision": decision,
                "received_at": timezone.now(),
            },
        )
        audit_record(
            actor=None,
            actor_label="federation ClientApp",
            action="federation_model_received",
            obj=row,
            campaign=site.campaign_id,
            run=run.pk,
            round=number,
            model_version=version.pk,
            parameter_sha256=digest,
            promoted=promoted,
            decision=decision,
        )
    if number >= run.rounds:
        federation_site_done(site, run.rounds)
    return Received(round=row, version=version, figures=metrics)


def _classifier_step(
    site: FederationSite,
    state: Mapping[str, Any],
    cases: Mapping[str, Sequence[training.Case]],
    data: scan_classifier.ClassifierData | None,
    incumbent: ModelVersion | None,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
) -> str:
    """Test and keep the round's global classifier (metrics["classifier"], as retraining's);
    the file's path relative to the data folder, or "" when the run trains none."""
    run = site.run
    spec = scan_classifier.classifier_spec(run)
    if spec is None or not state:
        metrics["classifier"] = {"trained": False, "reason": scan_classifier.skipped_reason(run)}
        return ""
    data = data if data is not None else scan_classifier.load_data(site.export, cases, spec)
    model, figures = scan_classifier.test_figures(spec, state, data, incumbent)
    metrics["classifier"] = figures
    relative = model_versions.new_classifier_path(site.campaign)
    classifier_net.save_classifier(
        model,
        media_path(relative),
        {"campaign": site.campaign.slug, "federation": lineage, "test_metrics": figures["candidate"]},
    )
    return relative


def _classifier_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """What a round's row keeps of the classifier's test: the headline figures, not the curves."""
    if not figures.get("trained"):
        return {"trained": False, "reason": figures.get("reason", "")}

    def headline(f: dict[str, Any]) -> dict[str, Any]:
        vs_rest = f.get("vs_rest") or {}
        return {
            "auc_micro": f.get("auc_micro"),
            "auc_macro": f.get("auc_macro"),
            "accuracy": f.get("accuracy"),
            "positive_class": f.get("positive_class"),
            "sensitivity": vs_rest.get("sensitivity"),
            "specificity": vs_rest.get("specificity"),
        }

    incumbent = figures.get("incumbent")
    return {
        "trained": True,
        "test_cases": figures["test_cases"],
        "candidate": headline(figures["candidate"]),
        "incumbent": {"label": incumbent["label"], **headline(incumbent)} if incumbent else None,
    }
