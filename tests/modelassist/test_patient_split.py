"""The patient-level fallback split (issue #14 §1): a campaign of fewer than three institutions
splits by patient (every scan of a patient in one split, 70/15/15, fixed once given), says so,
and a retraining run with too few test cases says how many more approved scans it needs."""

from __future__ import annotations

import pytest

from tests.conftest import make_series, truth_of
from tests.modelassist.curated import approve, institution, label_volume, run_export

TINY = {"epochs": 1, "slices_per_case": 2, "batch_size": 4, "patience": 1, "max_minutes": 1}
SAME_HOSPITAL = "tested on held-out patients of the same hospital, not on another hospital"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def import_patients(cast, tmp_path, patients: dict[str, int], *, first_seed: int = 0, slug: str = "demo"):
    """Phantom series of one institution through the real ingest; patients: name -> scans."""
    from core.models import Scan
    from demo.phantom import load_ground_truth
    from imaging.ingest.service import ingest_path

    inst = institution(slug)
    cast.campaign.shared_with.add(inst)
    folder = tmp_path / f"in-{first_seed}"
    truths, seed = {}, first_seed
    for patient, n in patients.items():
        for k in range(n):
            series = make_series(
                folder, slices=8, size=32, seed=seed, patient=patient, study_date=f"2020031{k}"
            )
            truths[series.name] = load_ground_truth(truth_of(series)).lesions
            seed += 1
    report = ingest_path(folder, institution=inst, campaign_id=cast.campaign.pk)
    assert not report.rejected_series, report.as_dict()
    scans = list(Scan.objects.filter(pk__in=report.scans_created).order_by("pk"))
    assert len(scans) == sum(patients.values())
    # Every phantom's truth carries the lesions of its own seed; any of a patient's fits the QC path.
    any_truth = next(iter(truths.values()))
    return [(s, label_volume(any_truth, s.shape)) for s in scans]


def rows_scans(cast, per_patient: list[int]):
    """Scan rows (no DICOM) of the cast's institution: per_patient[i] scans of patient i."""
    from tests.qc.conftest import make_scans

    scans = []
    for n in per_patient:
        group = make_scans(cast.campaign, n)
        for scan in group[1:]:
            scan.study.patient = group[0].study.patient
            scan.study.save()
        scans += group
    return scans


def test_one_hospital_is_split_by_patient_and_the_manifest_says_so(cast, tmp_path):
    # Given a single-site campaign: 8 patients, some with serial scans.
    patients = {f"P{i}": (2 if i % 3 == 0 else 1) for i in range(8)}
    approve(cast, import_patients(cast, tmp_path, patients))

    # When the data manager exports it.
    export = run_export(cast)
    assert export.status == "done", export.error
    from modelassist.services.export import export_manifest

    manifest = export_manifest(export)

    # Then every split has cases, no patient is in two, and the manifest says how it was split.
    split_of_patient: dict[str, set[str]] = {}
    for c in manifest["cases"]:
        split_of_patient.setdefault(c["patient"], set()).add(c["split"])
    assert all(len(s) == 1 for s in split_of_patient.values())
    assert {c["split"] for c in manifest["cases"]} == {"train", "validation", "test"}
    assert manifest["split"]["by"] == "patient" and "institutions" not in manifest["split"]
    assert manifest["split"]["tested_on"] == SAME_HOSPITAL and "patient-level" in manifest["split"]["method"]
    assert sum(manifest["split"]["patients"].values()) == len(split_of_patient)
    assert export.summary["split_method"] == "patient" and export.summary["tested_on"] == SAME_HOSPITAL


def test_the_export_api_shows_the_patient_split(cast, tmp_path, api):
    approve(cast, import_patients(cast, tmp_path, {"A": 1, "B": 1, "C": 1}))
    export = run_export(cast)
    api.force_authenticate(cast.manager)
    row = api.get(f"/api/exports/{export.pk}/").json()
    assert row["summary"]["split_method"] == "patient" and row["summary"]["tested_on"] == SAME_HOSPITAL


def test_patient_splits_never_change_and_new_scans_join_their_patient(cast):
    from modelassist.services import splits

    first = rows_scans(cast, [2, 1, 1, 3, 1, 1, 2, 1, 1, 1])
    with_cases = splits.assign_cases(cast.campaign, first, export=None)
    before = {s.pk: (with_cases[s.pk].number, with_cases[s.pk].split) for s in first}
    patient_split = {s.study.patient_id: with_cases[s.pk].split for s in first}
    assert len(patient_split) == 10 and set(patient_split.values()) == {"train", "validation", "test"}

    # Later: new scans of known patients (the test patients included) and of new patients.
    from core.models import CampaignScan, Scan, Study

    later = rows_scans(cast, [1] * 12)
    # A test patient's scan and one of another split (the first scan may itself be the test one).
    test_scan = next(s for s in first if with_cases[s.pk].split == "test")
    other_scan = next(s for s in first if with_cases[s.pk].split != "test")
    known = [test_scan, other_scan]
    for scan in known:
        study = Study.objects.create(
            institution=cast.institution, patient=scan.study.patient, study_uid=f"{scan.study.study_uid}.9"
        )
        repeat = Scan.objects.create(
            **{
                f: getattr(scan, f)
                for f in ("rows", "columns", "slices", "spacing", "origin", "direction", "volume_sha256")
            },
            study=study,
            series_uid=f"{scan.series_uid}.9",
            storage_dir=f"{scan.storage_dir}-9",
        )
        CampaignScan.objects.create(campaign=cast.campaign, scan=repeat)
        later.append(repeat)
    cases = splits.assign_cases(cast.campaign, first + later, export=None)

    assert {s.pk: (cases[s.pk].number, cases[s.pk].split) for s in first} == before  # nothing moved
    for scan in later[-2:]:
        assert cases[scan.pk].split == patient_split[scan.study.patient_id]  # the patient's split
    by_patient: dict[int, set[str]] = {}
    for s in first + later:
        by_patient.setdefault(s.study.patient_id, set()).add(cases[s.pk].split)
    assert all(len(v) == 1 for v in by_patient.values())
    assert cast.campaign.split_plan.method == "patient"


def test_patient_split_is_seeded_and_close_to_70_15_15(cast):
    from modelassist.models import SplitPlan
    from modelassist.services import splits

    SplitPlan.objects.create(campaign=cast.campaign, seed=99)
    scans = rows_scans(cast, [1, 2] * 20)
    cases = splits.assign_cases(cast.campaign, scans, export=None)
    got = [cases[s.pk].split for s in scans]
    for split, share in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        assert got.count(split) / len(got) == pytest.approx(share, abs=0.08), split
    # The order comes from the stored seed and the pseudonyms: the same seed places them again alike.
    order = sorted(
        {s.study.patient.pseudonym for s in scans}, key=lambda p: splits.institution_order_key(99, p)
    )
    first = next(s for s in scans if s.study.patient.pseudonym == order[0])
    assert cases[first.pk].split == "train"


def test_three_institutions_keep_the_institution_split(cast):
    from modelassist.services import splits

    scans = rows_scans(cast, [1] * 9)
    for i, scan in enumerate(scans):
        scan.study.institution = institution(f"site{i % 3}")
        scan.study.save()
    cases = splits.assign_cases(cast.campaign, scans, export=None)
    assert cast.campaign.split_plan.method == "institution"
    by_inst: dict[int, set[str]] = {}
    for s in scans:
        by_inst.setdefault(s.study.institution_id, set()).add(cases[s.pk].split)
    assert sorted(len(v) for v in by_inst.values()) == [1, 1, 1]


@pytest.mark.parametrize(("test_cases", "more"), [(0, 34), (1, 27), (4, 7), (5, 0)])
def test_how_many_more_approved_scans_give_five_test_cases(test_cases, more):
    from modelassist.services import splits

    assert splits.more_scans_for_test(test_cases) == more


def test_a_run_with_too_few_test_cases_says_how_many_more_scans_it_needs(cast, tmp_path):
    from modelassist.services import training

    approve(cast, import_patients(cast, tmp_path, {f"P{i}": 1 for i in range(6)}))
    run = training.training_request(
        actor=cast.manager, campaign=cast.campaign, architecture="unet2d-tiny", params=TINY
    )
    run = training.training_run_execute(run.pk)  # here, not by a worker (on_commit never fires)

    assert run.status == "done", run.error
    n = run.metrics["test_cases"]
    assert 1 <= n < 5 and run.promoted is False and run.model_version is not None
    assert run.decision.startswith("too few test cases to decide") and "not promoted" not in run.decision
    assert f"about {training.splits.more_scans_for_test(n)} more approved scans" in run.decision
    assert run.metrics["split_method"] == "patient" and run.metrics["tested_on"] == SAME_HOSPITAL
