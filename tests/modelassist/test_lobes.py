"""The hospital's lobe model (#14 §5): lungmask's LTRCLobes network from a file the administrator
provides (CURATECT_LOBE_MODEL). A network of that architecture with random, seeded weights,
saved as lungmask's loader reads it (a plain state dict, torch.save), checks the wiring and the
shapes, not the anatomy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SMALL = {"slices": 16, "size": 64}


def ltrc_lobes_file(path: Path, n_classes: int = 6) -> Path:
    import torch
    from lungmask.resunet import UNet

    torch.manual_seed(0)
    # The network lungmask.mask.get_model builds for LTRCLobes (background + five lobes).
    net = UNet(
        n_classes=n_classes, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False
    )
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def labelled_scan(cast, import_phantoms):
    from annotation.services import model_revision_save

    (scan,) = import_phantoms(1, **SMALL)
    labels = np.zeros(scan.shape, dtype=np.uint8)
    labels[4:12, 20:44, 10:30] = 1  # a block of ground glass in the right lung (image left)
    model_revision_save(
        campaign=cast.campaign, scan=scan, volume=labels, model_label="test", model_version_id=None
    )
    return scan


def report_of(api, cast, scan):
    api.force_authenticate(cast.manager)
    return api.get(f"/api/campaigns/{cast.campaign.pk}/scans/{scan.pk}/report/")


def test_with_a_lobe_model_the_report_scores_five_lobes_out_of_25(
    cast, labelled_scan, api, settings, tmp_path, monkeypatch
):
    import torch.hub

    from modelassist.lobes import lobe_model
    from modelassist.quantify import LOBE_NAMES
    from modelassist.services.quantification import lobe_cache_path, scan_lobes

    def no_download(*args, **kwargs):
        raise AssertionError("the lobe model must be read from its file, never downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    settings.CURATECT_LOBE_MODEL = str(ltrc_lobes_file(tmp_path / "ltrc-lobes.pth"))

    response = report_of(api, cast, labelled_scan)

    assert response.status_code == 200, response.content
    report = response.json()
    assert report["region_kind"] == "lobe"
    assert [r["name"] for r in report["regions"]] == list(LOBE_NAMES.values())
    assert all(r["kind"] == "lobe" and 0 <= r["severity_score"] <= 5 for r in report["regions"])
    assert report["severity_score_max"] == 25
    assert report["severity_score_total"] == sum(r["severity_score"] for r in report["regions"]) <= 25
    assert "per lobe (hospital lobe model ltrc-lobes.pth)" in report["region_note"]
    # The lung mask decides what is lung; the lobe map only which lobe (random weights may
    # find no lobe at all, then no region has lung).
    lobes_lung = sum(r["lung_volume_ml"] for r in report["regions"])
    assert lobes_lung == pytest.approx(report["lung_volume_ml"]) or lobes_lung == 0

    # Once per process and per scan: the network stays loaded, the lobe map is cached.
    model = lobe_model()
    assert model is not None and model is lobe_model()
    cached = scan_lobes(labelled_scan, model, None)  # no volume given: it must come from the cache
    assert lobe_cache_path(labelled_scan, model).exists()
    assert cached.shape == tuple(labelled_scan.shape) and cached.dtype == np.uint8
    assert set(np.unique(cached)) <= {0, 1, 2, 3, 4, 5}


def test_without_a_lobe_model_the_report_scores_six_zones_out_of_30(cast, labelled_scan, api, settings):
    settings.CURATECT_LOBE_MODEL = ""

    report = report_of(api, cast, labelled_scan).json()

    assert report["region_kind"] == "zone" and len(report["regions"]) == 6
    assert report["severity_score_max"] == 30 and report["severity_score_total"] <= 30
    assert "not anatomical lobes" in report["region_note"]


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: d / "absent.pth", "cannot be read"),
        (lambda d: _write(d / "notes.pth", b"not a model"), "is not a PyTorch state dict"),
        (lambda d: ltrc_lobes_file(d / "r231.pth", n_classes=3), "not a state dict of lungmask's LTRCLobes"),
    ],
    ids=["missing", "not-torch", "two-lung-model"],
)
def test_an_unusable_lobe_model_is_refused_with_its_reason(
    cast, labelled_scan, api, settings, tmp_path, make, says
):
    settings.CURATECT_LOBE_MODEL = str(make(tmp_path))

    response = report_of(api, cast, labelled_scan)

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "lobe_model_unusable"
    assert says in body["detail"] and "CURATECT_LOBE_MODEL" in body["detail"]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
