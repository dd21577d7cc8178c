"""Retraining (DESIGN step 9): train the network on an export's training split (validation
for early stopping), measure lesion Dice on its test split, register a model version, and
promote it only if it beats the active version (or the baseline) on the same test cases.

A run is started by hand, by the schedule (Celery beat), or when `retrain_after_approved`
scans were approved since the last run. Without an export the run makes a new one first.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from django.db import transaction

from annotation.dice import pooled_case_dice
from core.api_errors import DomainError
from core.jobs.services import job_claim, job_fail, job_finish, job_progress, reason_of
from core.models import Campaign, User
from core.services.audit import audit_record
from modelassist.lazy import classifier_net, network
from modelassist.models import (
    BASELINE_LABEL,
    DatasetExport,
    JobStatus,
    ModelVersion,
    Split,
    TrainingRun,
    TrainingTrigger,
)
from modelassist.selectors import active_model_version, media_path, require_manager
from modelassist.services import evaluation, export_files, model_versions, splits
from modelassist.services import export as exports
from modelassist.services.training_budget import suggested_training_params
from platform_core.celery import task_named
from qc.models import CuratedRevision

log = logging.getLogger(__name__)

# 128-pixel crops around lesions: on 40 phantoms they beat whole slices for the same
# compute and beat the classical baseline (bench/train.py; network.train_model says more).
DEFAULT_PARAMS: dict[str, Any] = {
    "epochs": 30,
    "lr": 3e-3,
    "batch_size": 16,
    "slices_per_case": 64,
    "crop": 128,
    "seed": 0,
    "max_minutes": 120.0,
    "patience": 8,
    # The scan classifier's own: it takes about 1.5 s an epoch for 54 scans on 2 cores (its input
    # is a 32×64×64 grid whatever the scan's size). On 64 phantoms of four institutions, tested on
    # 12 of a fifth, 12 epochs left it answering COVID-19 for nearly every scan (micro-AUC 0.63);
    # 50 epochs, ending at the last, gave 0.76 and 0.81 (two cohorts). The validation loss of
    # ~10 scans swings more from epoch to epoch than it learns, so patience is the epochs and the
    # last epoch is kept (the best-validation epoch gave 0.68 and 0.75 on the same cohorts).
    "classifier_epochs": 50,
    "classifier_patience": 50,
    "classifier_max_minutes": 30.0,
}
PARAM_LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 500),
    "lr": (1e-6, 1.0),
    "batch_size": (1, 256),
    "slices_per_case": (1, 512),
    "crop": (0, 1024),  # 0: whole slices
    "seed": (0, 2**31 - 1),
    "max_minutes": (0.1, 24 * 60),
    "patience": (1, 500),
    "classifier_epochs": (1, 500),
    "classifier_patience": (1, 500),
    "classifier_max_minutes": (0.1, 120),
}
# A caller who sizes the segmenter (TINY runs of the tests, a quick look) and leaves the
# classifier's number out gets the same number for the classifier.
CLASSIFIER_FOLLOWS = {
    "classifier_epochs": "epochs",
    "classifier_patience": "patience",
    "classifier_max_minutes": "max_minutes",
}
STALE_RUNNING = dt.timedelta(hours=26)  # longer than any run may take (max_minutes + evaluation)

Progress = Callable[[float, str], None]
Case = tuple[np.ndarray, np.ndarray]


def clean_params(params: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The caller's parameters checked, over `defaults` (DEFAULT_PARAMS unless given)."""
    out = dict(defaults or DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in PARAM_LIMITS:
            raise DomainError(
                f"unknown training parameter {key!r}; known: {sorted(PARAM_LIMITS)}", code="bad_params"
            )
        lo, hi = PARAM_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise DomainError(f"{key} must be a number from {lo} to {hi}", code="bad_params")
        out[key] = type(DEFAULT_PARAMS[key])(value)
    for own, follows in CLASSIFIER_FOLLOWS.items():
        if follows in (params or {}) and own not in (params or {}):
            out[own] = type(DEFAULT_PARAMS[own])(out[follows])
    return out


def classifier_params(params: dict[str, Any]) -> dict[str, Any]:
    """epochs, patience and max_minutes of a run's classifier; a run queued before the classifier
    had its own numbers trains it with the segmenter's."""
    return {
        key: params.get(own, params[follows])
        for own, follows in CLASSIFIER_FOLLOWS.items()
        for key in [follows]
    }


def curated_count(campaign: Campaign) -> int:
    return exports.curated_rows(campaign).count()


def training_request(
    *,
    actor: User | None,
    campaign: Campaign,
    export: DatasetExport | None = None,
    architecture: str | None = None,
    params: dict[str, Any] | None = None,
    trigger: str = TrainingTrigger.MANUAL,
) -> TrainingRun:
    """Queue a training run (actor None: the schedule or the approval counter)."""
    if actor is not None:
        require_manager(actor, campaign, "start training runs")
    architecture = architecture or network.DEFAULT_ARCHITECTURE
    if architecture not in network.ARCHITECTURES:
        raise DomainError(
            f"unknown architecture {architecture!r}; known: {sorted(network.ARCHITECTURES)}",
            code="bad_architecture",
        )
    if export is not None and (export.campaign_id != campaign.pk or export.status != JobStatus.DONE):
        raise DomainError("train on a finished export of this campaign", code="bad_export")
    if export is None and not exports.curated_rows(campaign).exists():
        raise DomainError(
            "nothing to train on yet: no approved batch of this campaign has curated labels",
            code="nothing_to_train",
        )
    with transaction.atomic():
        run = TrainingRun.objects.create(
            campaign=campaign,
            export=export,
            trigger=trigger,
            architecture=architecture,
            # What the caller left out is sized to the cohort, so a click ends in minutes.
            params=clean_params(params, suggested_training_params(campaign, DEFAULT_PARAMS, params)),
            curated_scans=curated_count(campaign),
            requested_by=actor,
        )
        audit_record(
            actor=actor,
            actor_label="" if actor else f"system ({trigger})",
            action="training_request",
            obj=run,
            campaign=campaign,
            to_state=JobStatus.QUEUED,
            trigger=trigger,
            export=export.version if export else None,
        )
        run_id = run.pk
        transaction.on_commit(lambda: _send(run_id))
    return run


def _send(run_id: int) -> None:
    # Found by name: the tasks module imports the services, so the services never import it.
    task_named("modelassist.tasks.train_run").delay(run_id)


def retrain_if_due(
    campaign_id: int, trigger: str = TrainingTrigger.APPROVED, threshold: int | None = None
) -> TrainingRun | None:
    """Start a run when `threshold` (default: the campaign's retrain_after_approved; 0 = never)
    scans were curated since the last run started. One run at a time per campaign."""
    campaign = Campaign.objects.get(pk=campaign_id)
    needed = campaign.retrain_after_approved if threshold is None else threshold
    if needed <= 0:
        return None
    with transaction.atomic():
        Campaign.objects.select_for_update().get(pk=campaign.pk)  # two approvals at once start one run
        runs = TrainingRun.objects.filter(campaign=campaign)
        if runs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
            return None
        last = runs.order_by("-pk").first()
        new = curated_count(campaign) - (last.curated_scans if last else 0)
        if new < needed:
            return None
        return training_request(actor=None, campaign=campaign, trigger=trigger)


def retrain_scheduled() -> list[int]:
    """The schedule: every campaign with at least one scan curated since its last run retrains."""
    started = []
    with_curated = CuratedRevision.objects.filter(withdrawn_at__isnull=True).values("annotation__campaign_id")
    for campaign_id in (
        Campaign.objects.filter(pk__in=with_curated).order_by("pk").values_list("pk", flat=True)
    ):
        run = retrain_if_due(campaign_id, trigger=TrainingTrigger.SCHEDULE, threshold=1)
        if run is not None:
            started.append(run.pk)
    return started


# ----------------------------------------------------------------------------- the job


def training_run_execute(run_id: int, progress: Progress | None = None, *, worker: str = "") -> TrainingRun:
    """Run the job; safe to call twice (a finished run is returned as it is). Failures are
    recorded on the row (status failed, error)."""
    run = TrainingRun.objects.select_related("campaign", "export").get(pk=run_id)
    # A running run not heard of for STALE_RUNNING lost its worker: take it over.
    if not job_claim(
        run, worker=worker, stale_after=STALE_RUNNING, message="starting", history=[], progress=0.0
    ):
        run.refresh_from_db()
        return run
    report = _reporter(run, progress or (lambda f, m: None))
    try:
        _execute(run, report)
    except Exception as exc:  # recorded on the row; the data manager sees why
        log.exception("training run %s failed", run.pk)
        job_fail(
            run,
            exc,
            action="training_failed",
            from_states=[JobStatus.RUNNING],
            audit={"campaign": run.campaign_id, "error": reason_of(exc)[:500]},
        )
    run.refresh_from_db()
    return run


def _reporter(run: TrainingRun, progress: Progress) -> Progress:
    def report(fraction: float, message: str) -> None:
        job_progress(run, fraction, message)
        progress(fraction, message)

    return report


def _execute(run: TrainingRun, report: Progress) -> None:
    export = run.export or _make_export(run, report)
    manifest = exports.export_manifest(export)
    cases = _cases_by_split(export, manifest)
    if not cases[Split.TRAIN]:
        raise DomainError(f"export v{export.version} has no training cases", code="no_training_cases")
    report(0.1, f"training on {len(cases[Split.TRAIN])} cases of export v{export.version}")
    model, history = _train(run, cases, report)

    report(0.9, f"evaluating on {len(cases[Split.TEST])} test cases")
    test = cases[Split.TEST]
    predictions = [network.predict_volume(model, hu) for hu, _, _ in test]
    candidate = pooled_case_dice([(p, labels) for p, (_, labels, _) in zip(predictions, test, strict=True)])
    incumbent_version = active_model_version(run.campaign)
    incumbent = evaluation.evaluate_incumbent(incumbent_version, test)
    classifier, classifier_metrics = _classifier_step(run, cases, manifest, incumbent_version, report)
    metrics = {
        "test_cases": len(test),
        "train_cases": len(cases[Split.TRAIN]),
        "validation_cases": len(cases[Split.VALIDATION]),
        "candidate": candidate,
        "incumbent": {
            "label": incumbent_version.label if incumbent_version else BASELINE_LABEL,
            "model_version_id": incumbent_version.pk if incumbent_version else None,
            **incumbent,
        },
        "best_val_dice": max((h["val_dice"] for h in history if h["val_dice"] is not None), default=None),
        "epochs_run": len(history),
        "classifier": classifier_metrics,
        "lesion_volume": evaluation.lesion_volume_agreement(predictions, test),
        "dice_definition": "pooled over the test cases; mean = mean of the per-class Dice of the lesion "
        "classes 1 and 2; a class absent from truth and prediction scores 1",
        **_split_facts(manifest, len(test)),
    }
    version = _register(run, export, model, history, metrics, classifier)
    promoted, decision = _decide(run, export, version, metrics, incumbent_version)
    job_finish(
        run,
        actor_label="training job",
        action="training_done",
        audit={
            "campaign": run.campaign,
            "promoted": promoted,
            "decision": decision,
            "model_version": version.pk,
        },
        export=export,
        metrics=metrics,
        model_version=version,
        promoted=promoted,
        decision=decision,
        message="done",
    )


def _make_export(run: TrainingRun, report: Progress) -> DatasetExport:
    report(0.0, "exporting the curated dataset")
    export = exports.export_request(actor=None, campaign=run.campaign, enqueue=False)
    export = exports.export_run(export.pk, lambda f, m: report(0.1 * f, f"export: {m}"))
    if export.status != JobStatus.DONE:
        raise DomainError(f"the export for this run failed: {export.error}", code="export_failed")
    TrainingRun.objects.filter(pk=run.pk).update(export=export)
    return export


def _cases_by_split(
    export: DatasetExport, manifest: dict
) -> dict[str, list[tuple[np.ndarray, np.ndarray, tuple]]]:
    root = media_path(export.path)
    out: dict[str, list] = {s: [] for s in Split.values}
    for case in manifest["cases"]:
        hu, affine = export_files.read_nifti(root / case["image"])
        labels, _ = export_files.read_nifti(root / case["label"])
        out[case["split"]].append(
            (
                hu.astype(np.int16, copy=False),
                labels.astype(np.uint8, copy=False),
                export_files.spacing_of_affine(affine),
            )
        )
    return out


def _train(run: TrainingRun, cases: dict, report: Progress) -> tuple[network.SliceSegmenter, list[dict]]:
    params = run.params
    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        record = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()}
        history.append(record)
        TrainingRun.objects.filter(pk=run.pk).update(history=list(history))
        report(
            0.1 + 0.8 * record["epoch"] / params["epochs"],
            f"epoch {record['epoch']} of at most {params['epochs']}: loss {record['loss']:.4f}"
            + (f", validation Dice {record['val_dice']:.3f}" if record["val_dice"] is not None else ""),
        )

    model, _ = network.train_model(
        [(hu, lab) for hu, lab, _ in cases[Split.TRAIN]],
        [(hu, lab) for hu, lab, _ in cases[Split.VALIDATION]],
        epochs=params["epochs"],
        lr=params["lr"],
        batch_size=params["batch_size"],
        slices_per_case=params["slices_per_case"],
        crop=params["crop"] or None,
        seed=params["seed"],
        progress=on_epoch,
        max_minutes=params["max_minutes"],
        architecture=run.architecture,
        patience=params["patience"],
    )
    return model, history


def _register(
    run: TrainingRun, export: DatasetExport, model, history: list[dict], metrics: dict, classifier=None
) -> ModelVersion:
    relative = model_versions.new_model_path(run.campaign)
    classifier_relative = ""
    if classifier is not None:
        classifier_relative = model_versions.new_classifier_path(run.campaign)
        classifier_net.save_classifier(
            classifier,
            media_path(classifier_relative),
            {
                "campaign": run.campaign.slug,
                "training_run": run.pk,
                "export_version": export.version,
                "test_metrics": metrics["classifier"]["candidate"],
            },
        )
    network.save_model(
        model,
        media_path(relative),
        {
            "campaign": run.campaign.slug,
            "training_run": run.pk,
            "export_version": export.version,
            "export_content_sha256": export.content_sha256,
            "params": run.params,
            "history": history,
            "test_metrics": metrics["candidate"],
        },
    )
    return model_versions.model_version_register(
        campaign=run.campaign,
        name=f"run-{run.pk}",
        file_path=relative,
        trained_on=export,
        metrics={**metrics, "history": history, "training_run": run.pk},
        classifier_file_path=classifier_relative,
    )


def _split_facts(manifest: dict, test_cases: int) -> dict[str, Any]:
    """What the test figures are worth (held-out hospitals or patients), and whether there are enough."""
    split = manifest.get("split", {})
    facts: dict[str, Any] = {
        "split_method": split.get("by", "institution"),  # exports before the patient fallback
        "tested_on": split.get("tested_on", splits.TESTED_ON["institution"]),
    }
    if test_cases < splits.min_test_cases():
        facts["needs_more_scans"] = splits.more_scans_for_test(test_cases)
    return facts


def _decide(
    run: TrainingRun,
    export: DatasetExport,
    version: ModelVersion,
    metrics: dict,
    incumbent: ModelVersion | None,
    activation_reason: str = "",
) -> tuple[bool, str]:
    """Promote only a strict improvement of the mean lesion Dice on the same test cases."""
    name = incumbent.label if incumbent else "the baseline (no model version was active)"
    cand, inc, n = metrics["candidate"]["mean"], metrics["incumbent"]["mean"], metrics["test_cases"]
    where = f"on the {n} test case{'s' if n != 1 else ''} of export v{export.version}"
    if n < splits.min_test_cases():
        more = metrics["needs_more_scans"]
        return False, (
            f"too few test cases to decide: export v{export.version} has {n} test case{'s' if n != 1 else ''}, "
            f"at least {splits.min_test_cases()} are needed; about {more} more approved scan"
            f"{'s' if more != 1 else ''} (15 % of new cases go to the test split) will give enough. "
            f"The new version is registered; {incumbent.label if incumbent else 'the baseline'} stays active"
        )
    clf = metrics.get("classifier") or {}
    if clf.get("trained") and clf["candidate"]["auc_micro"] is not None:
        return _decide_pair(run, version, metrics, incumbent, where, activation_reason)
    if cand <= inc:
        return False, f"not promoted: mean lesion Dice {cand:.3f} {where} does not beat {name} ({inc:.3f})"
    current = active_model_version(run.campaign)
    if (current.pk if current else None) != (incumbent.pk if incumbent else None):
        return False, "not promoted: the active model changed while this run was evaluated; compare again"
    model_versions.model_version_activate(
        actor=None, version=version, reason=activation_reason or f"training run {run.pk}"
    )
    return True, f"promoted: mean lesion Dice {cand:.3f} {where} beats {name} ({inc:.3f})"


def _decide_pair(
    run: TrainingRun,
    version: ModelVersion,
    metrics: dict,
    incumbent: ModelVersion | None,
    where: str,
    activation_reason: str = "",
) -> tuple[bool, str]:
    """A segmenter with a classifier: the segmenter's mean lesion Dice must not fall, and the
    classifier's micro-AUC must beat the active classifier's (or there is none); the reason
    names the figure that decided."""
    name = incumbent.label if incumbent else "the baseline (no model version was active)"
    cand, inc = metrics["candidate"]["mean"], metrics["incumbent"]["mean"]
    new_auc = metrics["classifier"]["candidate"]["auc_micro"]
    active = metrics["classifier"].get("incumbent")
    if cand < inc:
        return False, (
            f"not promoted: mean lesion Dice {cand:.3f} {where} falls below {name} ({inc:.3f}); "
            f"the segmenter must not get worse (classifier micro-AUC {new_auc:.3f})"
        )
    if active is not None and new_auc <= active["auc_micro"]:
        return False, (
            f"not promoted: classifier micro-AUC {new_auc:.3f} {where} does not beat {active['label']} "
            f"({active['auc_micro']:.3f}); mean lesion Dice {cand:.3f} does not fall below {inc:.3f}"
        )
    current = active_model_version(run.campaign)
    if (current.pk if current else None) != (incumbent.pk if incumbent else None):
        return False, "not promoted: the active model changed while this run was evaluated; compare again"
    model_versions.model_version_activate(
        actor=None, version=version, reason=activation_reason or f"training run {run.pk}"
    )
    if active is not None:
        return True, (
            f"promoted: classifier micro-AUC {new_auc:.3f} {where} beats {active['label']} "
            f"({active['auc_micro']:.3f}), and mean lesion Dice {cand:.3f} does not fall below {inc:.3f}"
        )
    return True, (
        f"promoted: {name} has no classifier, so the new classifier decided (micro-AUC {new_auc:.3f} "
        f"{where}); mean lesion Dice {cand:.3f} does not fall below {name} ({inc:.3f})"
    )


def promotion_decide(
    owner: Any,
    export: DatasetExport,
    version: ModelVersion,
    metrics: dict,
    incumbent: ModelVersion | None,
    *,
    activation_reason: str,
) -> tuple[bool, str]:
    """Retraining's promotion rule for another maker of model versions (a federation round's
    global model): `owner.campaign` is the campaign whose active version it must beat; `metrics`
    has "candidate", "incumbent" and "test_cases" as a training run's do."""
    return _decide(owner, export, version, metrics, incumbent, activation_reason)


# ----------------------------------------------------------------------------- the classifier


def classifier_architecture_for(segmenter_architecture: str) -> str:
    """The classifier trained beside a segmenter: the tiny one beside a tiny segmenter (tests)."""
    if segmenter_architecture.endswith("-tiny"):
        return "topff3d-tiny"
    return classifier_net.DEFAULT_ARCHITECTURE


def _classifier_step(
    run: TrainingRun, cases: dict, manifest: dict, incumbent: ModelVersion | None, report: Progress
) -> tuple[Any, dict[str, Any]]:
    """Train the scan-level classifier on the same export and split as the segmenter, and test
    it and the active classifier on the same test cases. (None, reason) when it cannot be trained."""
    from modelassist.classifier import data
    from modelassist.classifier.train import train_classifier

    label = data.diagnosis_label(run.campaign.label_schema)
    if label is None:
        return None, {"trained": False, "reason": "the label schema has no scan-level label to learn"}
    key, classes = label
    split_cases = {s: _labelled(cases[s], manifest, s, key, classes) for s in Split.values}
    train_classes = sorted({t for _, t in split_cases[Split.TRAIN]})
    if len(train_classes) < 2:
        seen = ", ".join(classes[t] for t in train_classes) or "none"
        return None, {
            "trained": False,
            "reason": f"not trained: the training split's curated {key} labels hold fewer than two classes "
            f"({seen}); a classifier needs scans of at least two",
        }
    report(0.92, f"training the scan classifier on {len(split_cases[Split.TRAIN])} cases")
    prepared = {s: _classifier_inputs(split_cases[s]) for s in Split.values}
    architecture = classifier_architecture_for(run.architecture)
    grid = classifier_net.ARCHITECTURES[architecture]["grid"]
    params = run.params
    own = classifier_params(params)
    model, history = train_classifier(
        data.stack_inputs(prepared[Split.TRAIN][0], prepared[Split.TRAIN][1], grid),
        prepared[Split.TRAIN][2],
        data.stack_inputs(prepared[Split.VALIDATION][0], prepared[Split.VALIDATION][1], grid),
        prepared[Split.VALIDATION][2],
        classes,
        epochs=own["epochs"],
        seed=params["seed"],
        architecture=architecture,
        patience=own["patience"],
        keep_best=False,  # see DEFAULT_PARAMS
        max_minutes=own["max_minutes"],
    )
    test, lungs, targets = prepared[Split.TEST]
    figures: dict[str, Any] = {
        "trained": True,
        "architecture": architecture,
        "label_key": key,
        "classes": classes,
        "train_cases": len(prepared[Split.TRAIN][2]),
        "validation_cases": len(prepared[Split.VALIDATION][2]),
        "test_cases": len(targets),
        "history": history,
        "candidate": evaluation.classifier_test_figures(model, test, lungs, targets),
        "incumbent": evaluation.evaluate_incumbent_classifier(incumbent, test, lungs, targets, classes),
    }
    return model, figures


def _labelled(split_cases: list, manifest: dict, split: str, key: str, classes: list[str]) -> list[tuple]:
    """(case, class index) of a split's cases that carry a curated label of the classifier's classes;
    the manifest lists each split's cases in the order _cases_by_split read them."""
    from modelassist.classifier import data

    entries = [c for c in manifest["cases"] if c["split"] == split]
    targets = data.case_targets(entries, key, classes)
    return [(case, t) for case, t in zip(split_cases, targets, strict=True) if t is not None]


def _classifier_inputs(labelled: list[tuple]) -> tuple[list, list[np.ndarray], list[int]]:
    from modelassist.classifier import data

    chosen = [case for case, _ in labelled]
    return chosen, data.lung_masks(chosen), [t for _, t in labelled]
