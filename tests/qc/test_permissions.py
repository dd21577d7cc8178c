"""The people rules of qc.permissions: the blindness rule is one rule, and the check queryset,
the batch board and the audit CSV all follow it, for a data manager who also checks."""

from __future__ import annotations

import csv
import io

import pytest

from core.models import CampaignMember, Role
from qc import permissions, selectors
from qc.models import Check
from qc.services import check_reassign
from tests.qc.conftest import decide, make_batch, open_checks, save, submit


@pytest.fixture
def manager_checks(cast, scans_of):
    """A submitted scan whose check B the data manager holds (they also check)."""
    scan, untouched = scans_of(2)  # a second, unsubmitted scan keeps the batch out of spot check
    batch = make_batch(cast.campaign, cast.manager, cast.annotator, [scan, untouched])
    save(cast.annotator, cast.campaign, scan)
    submit(cast.annotator, cast.campaign, scan)
    CampaignMember.objects.create(campaign=cast.campaign, user=cast.manager, role=Role.CHECKER)
    a, b = open_checks(cast.campaign, scan)
    check_reassign(actor=cast.manager, check=b, checker=cast.manager)
    return scan, batch, a, Check.objects.get(pk=b.pk)


def audit_check_ids(api, cast, scan) -> set[str]:
    api.force_authenticate(cast.manager)
    r = api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/audit.csv")
    assert r.status_code == 200
    return {
        row["object_id"]
        for row in csv.DictReader(io.StringIO(r.content.decode()))
        if row["object_type"] == "check"
    }


def board_verdicts(cast, batch) -> set[str]:
    board = selectors.batch_board(cast.manager, batch)
    return {c["verdict"] for c in board["items"][0]["checks"] if c["checker"] != cast.manager.username}


def test_every_view_hides_the_other_check_until_both_verdicts_are_in(cast, api, manager_checks):
    scan, batch, a, b = manager_checks
    decide(a, "fail")

    assert list(permissions.checks_hidden_from(cast.manager)) == [a]
    assert not selectors.checks_visible_to(cast.manager).filter(pk=a.pk).exists()
    assert board_verdicts(cast, batch) == {"hidden"}
    assert str(a.pk) not in audit_check_ids(api, cast, scan)

    decide(b, "pass")

    assert not permissions.checks_hidden_from(cast.manager).exists()
    assert selectors.checks_visible_to(cast.manager).filter(pk=a.pk).exists()
    assert board_verdicts(cast, batch) == {"fail"}
    assert str(a.pk) in audit_check_ids(api, cast, scan)


def test_blindness_holds_while_only_the_other_verdict_is_missing(cast, api, manager_checks):
    """The viewer decided first: the round is still open, so the other check stays out of view
    everywhere (before, the audit CSV alone still listed its assignment)."""
    scan, batch, a, b = manager_checks
    decide(b, "pass")

    assert list(permissions.checks_hidden_from(cast.manager)) == [a]
    assert not selectors.checks_visible_to(cast.manager).filter(pk=a.pk).exists()
    assert board_verdicts(cast, batch) == {"pending"}
    assert str(a.pk) not in audit_check_ids(api, cast, scan)
