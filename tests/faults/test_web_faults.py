"""Issue #16 §2: SIGKILL the web process (gunicorn, as the runner starts it) during a revision
save, at seeded random points from before the request arrives to after it answered; restart it.
What the client saw is the truth: a 201 is a stored head revision with the bytes sent on the
right parent; an error leaves the head as it was, or (killed between commit and answer) a whole
revision with exactly the bytes sent, which a retry on the old ETag finds as the new head (409).
"""

from __future__ import annotations

import base64
import gzip
import threading
import time

import numpy as np
import pytest
import requests

from tests.faults import harness

pytestmark = pytest.mark.django_db(transaction=True)
ROUNDS = 4


def _web(fault_logs, port: int) -> harness.Child:
    from platform_core.runner import web_command

    def answers() -> bool:  # the app is loaded, not just the master
        try:
            return requests.get(f"http://127.0.0.1:{port}/login/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    return harness.Child(
        "web", web_command("127.0.0.1", port), fault_logs, ready="Booting worker", probe=answers
    )


def _save(base: str, key: str, body: dict, etag: str | None, outcome: dict) -> None:
    headers = {"Authorization": f"Token {key}"}
    if etag:
        headers["If-Match"] = etag
    try:
        response = requests.post(base, json=body, headers=headers, timeout=60)
        outcome["status"], outcome["json"], outcome["etag"] = (
            response.status_code,
            response.json(),
            response.headers.get("ETag"),
        )
    except requests.RequestException as exc:
        outcome["error"] = type(exc).__name__


def test_web_killed_during_a_revision_save(cast, import_phantoms, children, fault_logs, storage_blobs_whole):
    from annotation import label_codec
    from annotation.models import Annotation, Revision
    from annotation.storage import load_blob
    from core.services.batches import batch_build
    from core.tokens.services import api_token_create

    # Given a scan assigned to the annotator, an API token, and the web server
    scan = import_phantoms(1, slices=40, size=128)[0]
    batch_build(actor=cast.manager, campaign=cast.campaign, annotator=cast.annotator, scan_ids=[scan.pk])
    Annotation.objects.filter(scan=scan).delete()  # no pre-segmentation ran (no worker): start clean
    _, key = api_token_create(user=cast.annotator, name="fault test", expires_in_days=1)
    port = harness.free_port()
    web = _web(fault_logs, port)
    children.append(web)
    web.start()
    base = f"http://127.0.0.1:{port}/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/annotation/revisions/"
    rng = np.random.default_rng(harness.SEED)
    head_id, etag, seen, stored_count = None, None, [], 0
    for round_ in range(ROUNDS):
        # When a full-volume save (noise: ~0.6 MB that compresses badly) is in flight and the web
        # process is SIGKILLed at a seeded point, then started again
        volume = rng.integers(0, 3, size=scan.shape, dtype=np.uint8)
        body = {
            "parent_id": head_id,
            "full": {"encoding": "gzip", "data": base64.b64encode(gzip.compress(volume.tobytes())).decode()},
            "time_spent_s": 5,
        }
        outcome: dict = {}
        sender = threading.Thread(target=_save, args=(base, key, body, etag, outcome))
        delay = harness.kill_point(f"web-save-{round_}", 0.0, 0.6)
        sender.start()
        time.sleep(delay)
        web.kill()
        sender.join(timeout=90)
        web.start()

        # Then what the client saw is what is stored
        annotation = Annotation.objects.filter(scan=scan).first()
        head = annotation.head if annotation else None
        if outcome.get("status") == 201:
            assert head is not None and head.pk == outcome["json"]["id"]
            assert head.parent_id == head_id
            seen.append(f"{delay:.2f}s: 201, stored")
        else:
            assert "error" in outcome or outcome.get("status", 0) >= 500, outcome
            if head is None or head.pk == head_id:
                seen.append(f"{delay:.2f}s: {outcome.get('error', outcome.get('status'))}, nothing stored")
            else:  # committed, killed before the answer left: the retry on the old ETag says so
                assert head.parent_id == head_id
                retry: dict = {}
                _save(base, key, body, etag, retry)
                assert retry["status"] == 409 and retry["json"]["head"]["id"] == head.pk, retry
                seen.append(f"{delay:.2f}s: {outcome['error']}, stored (a retry answers 409 with it)")
        if head is not None and head.pk != head_id:
            stored = label_codec.decode_volume(load_blob(head.label_sha256), scan.shape)
            assert np.array_equal(stored, volume), "the stored revision is not the volume sent"
            head_id, etag = head.pk, head.etag
            stored_count += 1
    assert Revision.objects.filter(annotation__scan=scan).count() == stored_count
    storage_blobs_whole("web SIGKILL during a revision save", "; ".join(seen))
