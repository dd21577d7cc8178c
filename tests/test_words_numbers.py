"""Words and numbers on the pages (issue #17 §5): the export's size is the download's, and the
audit CSV numbers finding slices from 1 at the head end, as the viewer does."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from tests.modelassist.curated import approve, import_scans, label_volume, run_export


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_exports_size_is_the_download_size(cast, api, tmp_path):
    cases = [
        (scan, label_volume(truth, scan.shape))
        for scan, truth in import_scans(cast, tmp_path, "alpha", 2, first_seed=0)
    ]
    approve(cast, cases)
    export = run_export(cast)
    api.force_authenticate(cast.manager)

    listed = api.get(f"/api/campaigns/{cast.campaign.pk}/exports/").json()[0]
    download = b"".join(api.get(f"/api/exports/{export.pk}/download/").streaming_content)

    assert listed["archive_bytes"] == len(download)
    assert listed["summary"]["archive_bytes"] == len(download)
    assert listed["summary"]["bytes"] != len(download)  # the unpacked size is another figure


def _failed_with_a_finding(cast, scan, z: int):
    from annotation.services import revision_save
    from core.services.batches import batch_build
    from qc.models import Check
    from qc.services import check_record, revision_submit

    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator, scan_ids=[scan.pk])
    rev = revision_save(
        actor=cast.annotator,
        campaign=cast.campaign,
        scan=scan,
        parent_id=None,
        full=label_volume(np.zeros(scan.shape, dtype=np.uint8), scan.shape),
        scan_labels={"diagnosis": "COVID-19"},
        time_spent_s=10,
    )
    revision_submit(actor=cast.annotator, campaign=cast.campaign, scan=scan, revision_id=rev.pk)
    first, second = Check.objects.filter(annotation__scan=scan).order_by("pk")
    check_record(actor=first.checker, check=first, verdict="pass")
    finding = {"slice": z, "position": [5, 6], "kind": "missed_lesion", "text": "a nodule"}
    check_record(actor=second.checker, check=second, verdict="fail", findings=[finding])


def _audit_findings(api, cast, scan) -> dict[str, str]:
    api.force_authenticate(cast.manager)
    response = api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/audit.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    return {row["to_state"]: row["findings"] for row in rows if row["action"] == "check_record"}


@pytest.mark.parametrize(
    "normal_z, expected", [(1.0, "slice 6: missed lesion"), (-1.0, "slice 3: missed lesion")]
)
def test_the_audit_csv_numbers_finding_slices_from_the_head_end(cast, api, tmp_path, normal_z, expected):
    # Given an 8-slice scan; z grows towards the head unless its slice normal points to the feet.
    ((scan, _),) = import_scans(cast, tmp_path, "alpha", 1, first_seed=3)
    scan.direction = [*scan.direction[:8], normal_z]
    scan.save(update_fields=["direction"])
    assert scan.slices == 8

    # When a checker fails it with a finding on stored z = 2
    _failed_with_a_finding(cast, scan, z=2)

    # Then the CSV reads the number the viewer shows: 8 - 2 = 6 from the head, or 2 + 1 = 3.
    assert _audit_findings(api, cast, scan) == {"pass": "", "fail": expected}
