"""A whole campaign through the services, in the shape of the published team (Jin et al. 2020):
four annotators, two checkers, one senior; one 50-scan batch with revisions failed and fixed,
three small batches that pass first time; everything approved, and the QC figures asserted
from the script."""

from __future__ import annotations

import math

import pytest

from annotation.models import Annotation, AnnotationState, Revision
from core.label_schema import COVID19_SCHEMA
from core.models import AuditEvent, Campaign, CampaignMember, Institution, Membership, Role, User
from qc import selectors
from qc.metrics import qc_metrics
from qc.models import BatchReview, Check
from qc.services import spot_check_record
from tests.qc.conftest import cube, decide, finding, make_batch, make_scans, open_checks, save, submit

V1 = cube()  # 4×8×8 = 256 voxels of ground-glass
V2 = cube(y=(8, 18))  # 320: the boundary fixed
V3 = cube(y=(8, 20))  # 384
V_CLASS = cube()
V_CLASS[:, :, 12:16][V_CLASS[:, :, 12:16] == 1] = 2  # half of the lesion is consolidation


def dice(a_vox: int, b_vox: int, shared: int) -> float:
    return 2 * shared / (a_vox + b_vox)


def kappa(pairs: list[tuple[str, str]]) -> float:
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    pa = sum(a == "pass" for a, _ in pairs) / n
    pb = sum(b == "pass" for _, b in pairs) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return (po - pe) / (1 - pe)


@pytest.fixture
def team(db):
    inst = Institution.objects.create(slug="wuhan", name="Team hospital")
    campaign = Campaign.objects.create(
        slug="covid-ct", name="COVID-19 CT", institution=inst, label_schema=COVID19_SCHEMA
    )
    people = {}
    for name, role in [
        ("a1", Role.ANNOTATOR),
        ("a2", Role.ANNOTATOR),
        ("a3", Role.ANNOTATOR),
        ("a4", Role.ANNOTATOR),
        ("c1", Role.CHECKER),
        ("c2", Role.CHECKER),
        ("s1", Role.SENIOR),
        ("dm", Role.DATA_MANAGER),
    ]:
        user = User.objects.create_user(username=name, password="x")
        Membership.objects.create(user=user, institution=inst, role=role)
        CampaignMember.objects.create(campaign=campaign, user=user, role=role)
        people[name] = user
    return campaign, people


def run_round(campaign, scans, verdicts, *, seconds):
    """verdicts: scan index → (slot A verdict, slot B verdict)."""
    for i, (va, vb) in verdicts.items():
        a, b = open_checks(campaign, scans[i])
        assert (a.slot, b.slot) == ("A", "B")
        decide(a, va, time_spent_s=seconds, findings=[finding("boundary")] if va == "fail" else [])
        decide(b, vb, time_spent_s=seconds, findings=[finding("missed_lesion", z=5)] if vb == "fail" else [])


def senior_passes_all(campaign, senior, seconds=45):
    for sc in selectors.senior_queue(senior):
        spot_check_record(actor=senior, spot_check=sc, verdict="pass", time_spent_s=seconds)


def test_a_campaign_from_first_save_to_approval(team, sent_tasks, django_capture_on_commit_callbacks):
    campaign, p = team
    with django_capture_on_commit_callbacks(execute=True):
        big_batch, _ = run_big_batch(campaign, p)
        small = [run_small_batch(campaign, p, p[name]) for name in ("a2", "a3", "a4")]

    # every batch approved, every scan curated at its head revision, retraining asked four times
    for batch in [big_batch, *small]:
        assert BatchReview.objects.get(batch=batch).state == "approved"
    assert set(Annotation.objects.values_list("state", flat=True)) == {AnnotationState.CURATED}
    curated = selectors.curated_revisions(campaign)
    assert curated.count() == 62
    assert all(c.revision_id == c.annotation.head_id for c in curated.select_related("annotation"))
    assert [name for name, *_ in sent_tasks].count("modelassist.tasks.retrain_if_due") == 4
    # nothing lost: 50 + 10 + 1 + 1 revisions in the big batch, one per scan in the small ones
    assert Revision.objects.count() == 62 + 10 + 1 + 1
    # no one checked their own work, and the two checkers of each round differ
    for check in Check.objects.select_related("revision"):
        assert check.checker_id != check.revision.author_id
    assert AuditEvent.objects.filter(action="annotation_state", to_state="curated").count() == 62

    figures = qc_metrics(campaign, big_batch)["overall"]
    assert_big_batch_figures(figures)
    by_checker = {c["username"]: c for c in qc_metrics(campaign, big_batch)["by_checker"]}
    assert (by_checker["c1"]["checks"], by_checker["c1"]["passed"]) == (62, 53)
    assert (by_checker["c2"]["checks"], by_checker["c2"]["passed"]) == (62, 56)
    assert by_checker["c1"]["agreement_with_partner"]["kappa"] == pytest.approx(
        figures["checker_agreement"]["kappa"]
    )

    everything = qc_metrics(campaign)
    assert everything["overall"]["first_pass"] == {"annotations": 62, "passed": 52, "rate": 52 / 62}
    per_annotator = {a["username"]: a for a in everything["by_annotator"]}
    assert per_annotator["a1"]["first_pass"]["rate"] == 0.8
    for name in ("a2", "a3", "a4"):
        assert per_annotator[name]["first_pass"]["rate"] == 1.0
        assert per_annotator[name]["rounds_until_pass"]["mean"] == 1.0
        assert per_annotator[name]["step3"] == {"spot_checks": 2, "passed": 2, "rate": 1.0}
        assert per_annotator[name]["dice_consecutive_revisions"] == {"pairs": 0, "mean": None}
    assert [b["review_state"] for b in everything["by_batch"]] == ["approved"] * 4


def run_big_batch(campaign, p):
    scans = make_scans(campaign, 50)
    batch = make_batch(campaign, p["dm"], p["a1"], scans)
    for scan in scans:
        save(p["a1"], campaign, scan, V1, time_spent_s=300)
        submit(p["a1"], campaign, scan)
    # step 1: 40 of 50 pass first time (Jin et al.'s 80 %)
    round1 = {i: ("pass", "pass") for i in range(40)}
    round1 |= {i: ("fail", "pass") for i in range(40, 45)}
    round1 |= {i: ("fail", "fail") for i in range(45, 48)}
    round1 |= {i: ("pass", "fail") for i in range(48, 50)}
    run_round(campaign, scans, round1, seconds=60)
    assert Annotation.objects.filter(state=AnnotationState.NEEDS_REVISION).count() == 10
    # step 2: revise and recheck by the same two checkers, until both pass
    for i in range(40, 50):
        save(p["a1"], campaign, scans[i], V2, time_spent_s=120)
        assert submit(p["a1"], campaign, scans[i]).round == 2
    run_round(
        campaign, scans, {i: ("pass", "pass") for i in range(40, 49)} | {49: ("fail", "fail")}, seconds=30
    )
    save(p["a1"], campaign, scans[49], V3, time_spent_s=90)
    assert submit(p["a1"], campaign, scans[49]).round == 3
    run_round(campaign, scans, {49: ("pass", "pass")}, seconds=30)

    # step 3: 15 of 50 drawn; the senior fails one scan that had passed steps 1–2 first time
    review = BatchReview.objects.get(batch=batch)
    draw = review.current_draw()
    assert review.state == "spot_check" and draw.sample_size == math.ceil(0.3 * 50) == 15
    index = {s.pk: i for i, s in enumerate(scans)}
    failed_index = min(index[sid] for sid in draw.sampled_scan_ids if index[sid] < 40)
    failed = scans[failed_index]
    for sc in selectors.senior_queue(p["s1"]):
        verdict = "fail" if sc.annotation.scan_id == failed.pk else "pass"
        spot_check_record(
            actor=p["s1"],
            spot_check=sc,
            verdict=verdict,
            time_spent_s=45,
            findings=[finding("wrong_class", text="consolidation, not GGO")] if verdict == "fail" else [],
        )
    assert BatchReview.objects.get(batch=batch).state == "spot_check"
    save(p["a1"], campaign, failed, V_CLASS, time_spent_s=60)
    assert submit(p["a1"], campaign, failed).round == 2
    run_round(campaign, scans, {failed_index: ("pass", "pass")}, seconds=30)
    senior_passes_all(campaign, p["s1"])
    return batch, scans


def run_small_batch(campaign, p, annotator):
    scans = make_scans(campaign, 4)
    batch = make_batch(campaign, p["dm"], annotator, scans)
    for scan in scans:
        save(annotator, campaign, scan, V1, time_spent_s=200)
        submit(annotator, campaign, scan)
    run_round(campaign, scans, {i: ("pass", "pass") for i in range(4)}, seconds=40)
    senior_passes_all(campaign, p["s1"], seconds=50)
    return batch


def assert_big_batch_figures(f):
    assert f["scans"] == 50
    assert f["first_pass"] == {"annotations": 50, "passed": 40, "rate": 0.8}
    assert f["rounds_until_pass"]["distribution"] == {"1": 40, "2": 9, "3": 1}
    assert f["rounds_until_pass"]["mean"] == pytest.approx(61 / 50)
    pairs = (
        [("pass", "pass")] * 40
        + [("fail", "pass")] * 5
        + [("fail", "fail")] * 3
        + [("pass", "fail")] * 2
        + [("pass", "pass")] * 9
        + [("fail", "fail")]
        + [("pass", "pass")]
        + [("pass", "pass")]
    )
    agreement = f["checker_agreement"]
    assert agreement["pairs"] == 62 and agreement["agreement"] == pytest.approx(55 / 62)
    assert agreement["kappa"] == pytest.approx(kappa(pairs))
    assert f["step3"] == {"spot_checks": 16, "passed": 15, "rate": 15 / 16}
    d12, d23, d_class = dice(256, 320, 256), dice(320, 384, 320), dice(256, 256, 128)
    assert f["dice_consecutive_revisions"]["pairs"] == 12
    assert f["dice_consecutive_revisions"]["mean"] == pytest.approx((10 * d12 + d23 + d_class) / 12)
    t = f["time_per_scan"]
    assert t["annotator"]["mean_s_per_scan"] == pytest.approx((39 * 300 + 360 + 9 * 420 + 510) / 50)
    assert t["checker"]["mean_s_per_scan"] == pytest.approx((39 * 120 + 180 + 9 * 180 + 240) / 50)
    assert t["senior"] == {"scans": 15, "total_s": 14 * 45 + 90, "mean_s_per_scan": pytest.approx(720 / 15)}
