"""Training parameters sized to a time budget for a campaign's cohort (#14 §1).

A "Start retraining" click that leaves epochs and samples empty should end, evaluation and
promotion decision included, within about 5 minutes on the embedded setup's 2 CPU cores. The
network's cost grows with the samples seen (epochs × slices per case × training cases × crop
area) plus a validation pass per epoch (validation cases × their slice area); the constants
below were measured on 2 cores with the default architecture (unet2d-small), and max_minutes
caps the training at the budget, so a loaded or slower machine still ends on time (with fewer
epochs) and a faster one early. Explicit parameters always win.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.db.models import Avg

from core.models import Campaign, Scan
from modelassist.services import export as exports

# Seconds per pixel of one training sample (forward + backward, batch 16) and per pixel of one
# predicted validation slice, twice what 2 idle cores took (0.008 s per 128² crop, 0.011 s per
# 128² slice) as a machine shared with a web server and other workers does; on 2 cores loaded
# 4× they were 0.035 s and 0.05 s, and then max_minutes ends the training on time.
TRAIN_SECONDS_PER_PIXEL = 0.015 / 128**2
PREDICT_SECONDS_PER_PIXEL = 0.02 / 128**2
# Of the ~5 minutes a click may take, the export, the test-split evaluation of the candidate and
# the active model (or baseline), and registering take about a minute on the demo cohort, and the
# scan classifier gets its own minute (its 50 epochs of 25 demo scans take ~55 s on 2 idle cores).
TRAINING_BUDGET_MINUTES = 3.0
CLASSIFIER_BUDGET_MINUTES = 1.0
# Fewer epochs than this leave the cosine schedule no room; fewer samples, no lesions to learn.
MIN_EPOCHS, MIN_SLICES_PER_CASE = 3, 16
# A caller who sets any of these sizes the run; the budget then stays out of it.
SIZING_KEYS = frozenset({"epochs", "slices_per_case", "max_minutes"})
TRAIN_SHARE, VALIDATION_SHARE = 0.70, 0.15  # the export's fixed split


def cohort_facts(campaign: Campaign) -> dict[str, float]:
    """Curated scans, and their mean slices and slice area: what a run would train on."""
    curated = exports.curated_rows(campaign)
    agg = Scan.objects.filter(pk__in=curated.values("annotation__scan")).aggregate(
        slices=Avg("slices"), rows=Avg("rows"), columns=Avg("columns")
    )
    return {
        "scans": curated.count(),
        "slices": float(agg["slices"] or 0),
        "rows": float(agg["rows"] or 0),
        "columns": float(agg["columns"] or 0),
    }


def suggested_training_params(
    campaign: Campaign,
    defaults: dict[str, Any],
    given: Mapping[str, Any] | None = None,
    budget_minutes: float = TRAINING_BUDGET_MINUTES,
) -> dict[str, Any]:
    """`defaults` with epochs and slices per case cut (never raised) to fit `budget_minutes` of
    training for this campaign's curated cohort, and max_minutes set to the budget so a slower
    machine stops on time (keeping the best epoch); the classifier's time capped likewise. A caller who `given` any of SIZING_KEYS
    sized the run themselves: then, as with no curated scans, the defaults."""
    facts = cohort_facts(campaign)
    if not facts["scans"] or not facts["rows"] or SIZING_KEYS & set(given or ()):
        return dict(defaults)
    train_cases = max(1, round(TRAIN_SHARE * facts["scans"]))
    val_cases = max(0, round(VALIDATION_SHARE * facts["scans"]))
    crop = defaults["crop"] or math.inf  # 0: whole slices
    sample_pixels = min(crop, facts["rows"]) * min(crop, facts["columns"])
    per_sample = TRAIN_SECONDS_PER_PIXEL * sample_pixels * train_cases
    validation = PREDICT_SECONDS_PER_PIXEL * val_cases * facts["slices"] * facts["rows"] * facts["columns"]
    budget = 60.0 * budget_minutes

    epochs, per_case = int(defaults["epochs"]), int(defaults["slices_per_case"])
    # Halve the samples per case down to the floor before dropping epochs: more epochs give the
    # early stopping on validation Dice more chances to keep a good model.
    while per_case > 2 * MIN_SLICES_PER_CASE and epochs * (per_case * per_sample + validation) > budget:
        per_case //= 2
    epochs = max(MIN_EPOCHS, min(epochs, math.floor(budget / (per_case * per_sample + validation))))
    return {
        **defaults,
        "epochs": epochs,
        "slices_per_case": per_case,
        "max_minutes": budget_minutes,
        "classifier_max_minutes": min(defaults["classifier_max_minutes"], CLASSIFIER_BUDGET_MINUTES),
    }
