"""What the model saves a person (#14 §4): NoC@90, the number of interactions a simulated
annotator needs to bring a scan's label to Dice ≥ 0.90 against the phantom's truth, with the
platform's own tools through the API the viewer uses.

Each step looks at the label the annotator has now, takes the largest connected component of
its errors (voxels whose class differs from the truth: missed, extra or of the wrong class) and
acts at the component's centre (its voxel deepest inside it, as a person clicks the middle of
what is wrong), with the class the truth has there (0: erase). The step is one of the viewer's
tools, whichever the annotator sees helps more (a person sees a grown region before keeping it,
and undoes a leak):

- a region-grow click: POST …/region-grow/ at the centre with the viewer's default tolerance
  (± 120 HU) and the radius limit set to how far the component reaches from there (5–40 mm,
  the viewer's slider), painted with the class;
- a brush stroke in that axial slice, drawn along the error there: the component's piece in
  that slice within 40 mm of the centre (a generous stroke: a person traces it exactly);
- where the centre lies in a region labelled with another class, a relabel click (R) on it: the
  region, 3D and face-connected, takes the truth's class; to background, that is the remove
  click (X), which takes out a wrong pre-segmented blob whole.

Every step is saved as the viewer saves: POST …/annotation/revisions/ with the changed box and
the head revision as parent. The Dice is the pooled class Dice (annotation.dice: a voxel agrees
only where both give it the same lesion class). A scan that does not reach 0.90 in 40 steps
counts 40.

Starts, each a campaign of its own with the same scans: empty; the classical baseline's
pre-segmentation; and a model version trained here on other phantoms (curated through the real
QC services, exported, trained by the `train` queue's service) pre-segmenting as the active
model. Pre-segmentation runs through the `assist` queue's service. The scans are new patients
of the hospitals whose curated scans trained the model (their scanner styles): what a team's own
model meets when it pre-segments the team's next batch. The training runs a fixed number of
epochs (no time cut: a crowded machine takes longer, it does not get a weaker model).

Prints JSON: noc90_empty, noc90_baseline, noc90_model (means over SCANS scans), reached_share
(per start: share of scans that reached 0.90), start_dice (per start: mean Dice before any
step) and train (the model's training facts). Phantom figures test the pipeline, not clinical
accuracy.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import _django
import numpy as np
from learning_curve import Case, bench_people, curate, import_cases, phantom_cases, retrain
from scipy import ndimage

SCANS, TRAIN_SCANS, HOSPITALS = 12, 40, 2
SLICES, SIZE = 40, 128
# unet2d-small at the phantoms' own 128² grid (the default upscales them to 256²: 4× the work).
ARCHITECTURE = "unet2d-small-128"
# Two hospitals: the export splits by patient, so about 28 of the 40 train. 15 epochs of 64
# crops of 64² per case, 70 % around a lesion (at the 128 grid, what 128² crops of the default's
# 256² are: network.train_model's crop recipe at a quarter of the cost), all of them run
# (patience = epochs; the best validation epoch is kept): a few minutes on 2 quiet cores.
# max_minutes is only a safety cap.
TRAIN_PARAMS = {"epochs": 15, "slices_per_case": 64, "crop": 64, "patience": 15, "max_minutes": 60.0}
TARGET, MAX_STEPS = 0.90, 40
TOLERANCE_HU = 120  # the viewer's default grow tolerance
GROW_RADIUS_MM = (5.0, 40.0)  # the viewer's grow radius slider
BRUSH_REACH_MM = 40.0  # one stroke spans at most this far from where it starts
STARTS = ("empty", "baseline", "model")
TOOLS = ("grow", "brush", "relabel", "remove")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Annotator:
    """One scan's label as the viewer holds it, edited and saved through the API."""

    def __init__(self, client, campaign, scan, truth: np.ndarray):
        self.client, self.truth = client, truth
        self.base = f"/api/campaigns/{campaign.pk}/scans/{scan.pk}/"
        self.spacing_zyx = np.array([scan.spacing[2], scan.spacing[1], scan.spacing[0]], float)
        self.labels, self.head = self._load()

    def _load(self) -> tuple[np.ndarray, int | None]:
        revisions = self.client.get(self.base + "annotation/revisions/").json()
        if not revisions:
            return np.zeros(self.truth.shape, np.uint8), None
        response = self.client.get(self.base + "annotation/labels/")
        assert response.status_code == 200, response.status_code
        from annotation import label_codec

        raw = b"".join(response.streaming_content) if response.streaming else response.content
        labels = label_codec.decode_volume(raw, self.truth.shape)
        return np.array(labels, np.uint8), revisions[-1]["id"]

    def label_dice(self, labels: np.ndarray | None = None) -> float:
        from annotation.dice import pooled_class_dice

        return pooled_class_dice(self.labels if labels is None else labels, self.truth)

    def step(self) -> str:
        """One interaction at the centre of the largest error component; returns the tool used."""
        errors = self.labels != self.truth
        pieces, _ = ndimage.label(errors)
        sizes = np.bincount(pieces.ravel())[1:]
        component = pieces == (int(np.argmax(sizes)) + 1)
        depth = ndimage.distance_transform_edt(component, sampling=self.spacing_zyx)
        centre = tuple(int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
        value = int(self.truth[centre])
        candidates = [("brush", self._brush(component, centre, value))]
        grown = self._grow(centre, value, self._reach_mm(component, centre))
        if grown is not None:
            candidates.append(("grow", grown))
        relabelled = self._relabel(centre, value)
        if relabelled is not None:
            candidates.append(("relabel" if value else "remove", relabelled))
        tool, labels = max(candidates, key=lambda c: self.label_dice(c[1]))
        self._save(labels)
        return tool

    def _reach_mm(self, component: np.ndarray, centre: tuple) -> float:
        """How far the component reaches from the centre: the radius limit a person would set."""
        points = np.argwhere(component)
        return float(np.sqrt((((points - np.array(centre)) * self.spacing_zyx) ** 2).sum(axis=1)).max())

    def _grow(self, centre: tuple, value: int, reach_mm: float) -> np.ndarray | None:
        radius = float(np.clip(reach_mm, *GROW_RADIUS_MM))
        response = self.client.post(
            self.base + "region-grow/",
            {"seed": list(centre), "tolerance": TOLERANCE_HU, "radius_mm": radius, "connectivity": 6},
            format="json",
        )
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        if not body["voxels"]:
            return None
        from annotation import label_codec

        d, h, w = body["shape"]
        mask = np.frombuffer(label_codec.decode_payload(body["encoding"], body["data"], d * h * w), np.uint8)
        oz, oy, ox = body["offset"]
        labels = self.labels.copy()
        region = labels[oz : oz + d, oy : oy + h, ox : ox + w]
        region[mask.reshape(d, h, w) > 0] = value
        return labels

    def _relabel(self, centre: tuple, value: int) -> np.ndarray | None:
        """The viewer's relabel click (or, to background, its remove-region click): the labelled
        region of one class under the centre, 3D and face-connected, becomes `value`. None where
        the centre is unlabelled (nothing to click) or already `value`."""
        current = int(self.labels[centre])
        if current == 0 or current == value:
            return None
        pieces, _ = ndimage.label(self.labels == current)  # face neighbours, as tools/relabel.ts
        labels = self.labels.copy()
        labels[pieces == pieces[centre]] = value
        return labels

    def _brush(self, component: np.ndarray, centre: tuple, value: int) -> np.ndarray:
        """One stroke in the centre's axial slice: the brush drawn along the error there (its piece
        of the component in that slice, within the brush's reach of the centre)."""
        z, y, x = centre
        pieces, _ = ndimage.label(component[z])
        yy, xx = np.ogrid[: component.shape[1], : component.shape[2]]
        reach = ((yy - y) * self.spacing_zyx[1]) ** 2 + ((xx - x) * self.spacing_zyx[2]) ** 2
        stroke = (pieces == pieces[y, x]) & (reach <= BRUSH_REACH_MM**2)
        labels = self.labels.copy()
        labels[z][stroke] = value
        return labels

    def _save(self, labels: np.ndarray) -> None:
        from annotation import label_codec

        changed = label_codec.changed_bbox(self.labels, labels)
        if changed is None:
            return
        (oz, oy, ox), (d, h, w) = changed
        box = np.ascontiguousarray(labels[oz : oz + d, oy : oy + h, ox : ox + w])
        response = self.client.post(
            self.base + "annotation/revisions/",
            {
                "parent_id": self.head,
                "boxes": [
                    {
                        "offset": [oz, oy, ox],
                        "shape": [d, h, w],
                        "encoding": "zstd",
                        "data": label_codec.encode_payload(box.tobytes()),
                    }
                ],
                "time_spent_s": 5,
            },
            format="json",
        )
        assert response.status_code == 201, response.content[:300]
        self.labels, self.head = labels, response.json()["id"]


def noc(client, campaign, scan, truth: np.ndarray) -> tuple[int, bool, float, dict]:
    """(steps, reached, Dice at the start, tools used) for one scan from its current head."""
    person = Annotator(client, campaign, scan, truth)
    start = person.label_dice()
    tools = dict.fromkeys(TOOLS, 0)
    steps = 0
    while person.label_dice() < TARGET and steps < MAX_STEPS:
        tools[person.step()] += 1
        steps += 1
    reached = person.label_dice() >= TARGET
    # What the server holds is what the person ends with.
    assert np.array_equal(Annotator(client, campaign, scan, truth).labels, person.labels)
    return (steps if reached else MAX_STEPS), reached, start, tools


def start_campaign(slug: str, inst, people: dict):
    from core.label_schema import COVID19_SCHEMA
    from core.models import Campaign, CampaignMember, Role

    campaign = Campaign.objects.create(slug=slug, name=slug, institution=inst, label_schema=COVID19_SCHEMA)
    for name, role in [("annotator", Role.ANNOTATOR), ("manager", Role.DATA_MANAGER)]:
        CampaignMember.objects.create(campaign=campaign, user=people[name], role=role)
    return campaign


def presegment(campaign, people: dict, scans: list) -> None:
    """Assign the scans to the annotator and pre-segment them with the `assist` queue's service."""
    from core.services.batches import batch_build
    from modelassist.services.preseg import presegment_scan_run

    batch = batch_build(
        actor=people["manager"],
        campaign=campaign,
        annotator=people["annotator"],
        scan_ids=[s.pk for s in scans],
    )
    for scan in scans:
        row = presegment_scan_run(campaign.pk, scan.pk, batch.pk)
        assert row.status == "done", (row.status, row.error)


def trained_campaign(work: Path, inst, people: dict):
    """The model start's campaign: phantoms of HOSPITALS institutions curated, exported and
    trained on; the version is made active (promotion is the learning curve's business)."""
    from core.models import Institution
    from modelassist.services.model_versions import model_version_activate

    campaign = people["campaign"]
    t0 = time.perf_counter()
    for k in range(HOSPITALS):
        hospital = Institution.objects.create(slug=f"hospital-{k}", name=f"Hospital {k}")
        campaign.shared_with.add(hospital)
        cases = phantom_cases(TRAIN_SCANS // HOSPITALS, institution=k, seed=1, slices=SLICES, size=SIZE)
        curate(campaign, people, import_cases(work, hospital, campaign, cases))
    log(f"{TRAIN_SCANS} training phantoms curated in {time.perf_counter() - t0:.0f} s")
    run = retrain(campaign, people["manager"], architecture=ARCHITECTURE, params=TRAIN_PARAMS)
    if not run.model_version.is_active:
        model_version_activate(actor=people["manager"], version=run.model_version, reason="interaction bench")
    return campaign, run


def main() -> None:
    started = time.perf_counter()
    work = _django.setup()
    from rest_framework.test import APIClient

    inst, train_campaign, _ = _django.cast()
    people = {**bench_people(train_campaign, inst), "campaign": train_campaign}
    model_campaign, run = trained_campaign(work, inst, people)
    campaigns = {
        "empty": start_campaign("start-empty", inst, people),
        "baseline": start_campaign("start-baseline", inst, people),
        "model": model_campaign,
    }
    # Scans with lesions only: NoC measures correcting lesions (Dice of two empty labels is 1).
    # New patients (seed 2; the model trained on seed 1) of the training hospitals, half each.
    cases: list[Case] = []
    for k in range(HOSPITALS):
        pool = phantom_cases(3 * SCANS // HOSPITALS, institution=k, seed=2, slices=SLICES, size=SIZE)
        cases += [c for c in pool if c.phantom.lesions.any()][: SCANS // HOSPITALS]
    items = import_cases(
        work, inst, campaigns["empty"], cases, also=(campaigns["baseline"], campaigns["model"])
    )
    scans = [scan for scan, _ in items]
    from core.services.batches import batch_build

    batch_build(
        actor=people["manager"],
        campaign=campaigns["empty"],
        annotator=people["annotator"],
        scan_ids=[s.pk for s in scans],
    )
    presegment(campaigns["baseline"], people, scans)
    presegment(campaigns["model"], people, scans)

    client = APIClient()
    client.force_authenticate(people["annotator"])
    results: dict[str, list] = {name: [] for name in STARTS}
    for name in STARTS:
        t0 = time.perf_counter()
        for scan, case in items:
            results[name].append(noc(client, campaigns[name], scan, case.phantom.lesions))
        steps = [r[0] for r in results[name]]
        log(
            f"{name}: NoC@90 {np.mean(steps):.1f} {steps}, start Dice {np.mean([r[2] for r in results[name]]):.3f}, "
            f"tools {_sum_tools(results[name])} ({time.perf_counter() - t0:.0f} s)"
        )
    shutil.rmtree(work, ignore_errors=True)
    log(f"total {time.perf_counter() - started:.0f} s")
    print(
        json.dumps(
            {
                **{
                    f"noc90_{name}": round(float(np.mean([r[0] for r in results[name]])), 2)
                    for name in STARTS
                },
                "reached_share": {
                    name: round(float(np.mean([r[1] for r in results[name]])), 3) for name in STARTS
                },
                "start_dice": {
                    name: round(float(np.mean([r[2] for r in results[name]])), 3) for name in STARTS
                },
                "tools": {name: _sum_tools(results[name]) for name in STARTS},
                "scans": SCANS,
                "train": {
                    "scans": TRAIN_SCANS,
                    "architecture": ARCHITECTURE,
                    "epochs": TRAIN_PARAMS["epochs"],
                    "epochs_run": run.metrics["epochs_run"],
                    "test_dice": round(run.metrics["candidate"]["mean"], 4),
                },
            }
        )
    )


def _sum_tools(rows: list) -> dict[str, int]:
    return {tool: sum(r[3][tool] for r in rows) for tool in TOOLS}


if __name__ == "__main__":
    main()
