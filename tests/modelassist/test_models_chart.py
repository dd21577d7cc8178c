"""The models page plots each version's test figures against the curated scans it learned from
(#14 §4): the model-versions API says that count per version."""

from __future__ import annotations

import pytest

from tests.modelassist.curated import approve, import_scans, label_volume

TINY = {"epochs": 1, "slices_per_case": 4, "batch_size": 4, "patience": 1, "max_minutes": 2}


@pytest.fixture(autouse=True)
def _small_test_split(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CURATECT_MIN_TEST_CASES = 1


def curate(cast, tmp_path, cases: list[tuple[str, int, int]]) -> None:
    scans = []
    for slug, n, seed in cases:
        scans += [
            (s, label_volume(t, s.shape)) for s, t in import_scans(cast, tmp_path, slug, n, first_seed=seed)
        ]
    approve(cast, scans)


def train(cast):
    from modelassist.services.training import training_request, training_run_execute

    run = training_request(
        actor=cast.manager, campaign=cast.campaign, architecture="unet2d-tiny", params=TINY
    )
    run = training_run_execute(run.pk)
    assert run.status == "done", run.error
    return run


def test_each_version_says_how_many_curated_scans_it_learned_from(cast, tmp_path, api, monkeypatch):
    from modelassist.services import training

    monkeypatch.setattr(training, "_send", lambda run_id: None)  # the test runs the job itself
    # Given a first stage of five curated scans of four institutions and a version trained on it
    curate(cast, tmp_path, [("alpha", 2, 0), ("bravo", 1, 10), ("charlie", 1, 20), ("delta", 1, 30)])
    first = train(cast)
    # and a second stage that brings three more
    curate(cast, tmp_path, [("alpha", 3, 40)])
    second = train(cast)

    # When the data manager lists the campaign's model versions
    api.force_authenticate(cast.manager)
    versions = api.get(f"/api/campaigns/{cast.campaign.pk}/model-versions/").json()["versions"]

    # Then each says the curated scans of the export it learned from, next to its test figures
    by_id = {v["id"]: v for v in versions}
    assert by_id[first.model_version_id]["curated_scans"] == 5 == first.export.summary["cases"]
    assert by_id[second.model_version_id]["curated_scans"] == 8 == second.export.summary["cases"]
    assert "mean" in by_id[second.model_version_id]["metrics"]["candidate"]


def test_an_uploaded_version_has_no_curated_count(cast, tmp_path, api):
    from modelassist import network
    from modelassist.services.model_versions import model_version_upload

    path = tmp_path / "uploaded.pt"
    network.save_model(network.build_model("unet2d-tiny"), path, {})
    with open(path, "rb") as f:
        model_version_upload(actor=cast.manager, campaign=cast.campaign, name="from elsewhere", upload=f)

    api.force_authenticate(cast.manager)
    (version,) = api.get(f"/api/campaigns/{cast.campaign.pk}/model-versions/").json()["versions"]
    assert version["trained_on"] is None and version["curated_scans"] is None
