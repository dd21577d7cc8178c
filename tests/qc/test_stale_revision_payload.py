"""One stale-revision 409 (annotation.services.stale_revision_conflict) for save and submit alike."""

from __future__ import annotations

from annotation.models import Annotation
from tests.qc.conftest import make_batch, save

STALE_KEYS = {"detail", "code", "head", "edited_revision_id"}
HEAD_KEYS = {"id", "number", "author", "created_at"}


def url(cast, scan, tail):
    return f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/{tail}"


def test_a_stale_save_and_a_stale_submit_answer_the_same_shape(api, cast, scans_of):
    (scan,) = scans_of(1)
    make_batch(cast.campaign, cast.manager, cast.annotator, [scan])
    first = save(cast.annotator, cast.campaign, scan)
    second = save(cast.annotator, cast.campaign, scan)  # what a second tab saved meanwhile
    api.force_authenticate(cast.annotator)
    stale_etag = {"HTTP_IF_MATCH": f'"rev-{first.pk}"'}

    saved = api.post(url(cast, scan, "annotation/revisions/"), {"boxes": []}, format="json", **stale_etag)
    submitted = api.post(url(cast, scan, "annotation/submit/"), {}, format="json", **stale_etag)

    for response in (saved, submitted):
        assert response.status_code == 409, response.content
        body = response.json()
        assert set(body) == STALE_KEYS and set(body["head"]) == HEAD_KEYS
        assert body["head"]["id"] == second.pk and body["head"]["number"] == second.number
        assert body["head"]["author"] == second.author_display
        assert body["edited_revision_id"] == first.pk
    assert saved.json()["head"] == submitted.json()["head"]
    assert Annotation.objects.get(scan=scan).head_id == second.pk  # nothing was saved or submitted
