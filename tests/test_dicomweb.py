"""WADO-RS for the viewer: what it serves, and to whom (imaging/dicomweb/wado.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from core.services.batches import batch_build

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def parse_multipart(response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body into (headers, body) parts, as a strict client would."""
    boundary = re.search(r'boundary="?([^";]+)"?', response["Content-Type"]).group(1).encode()
    body = response.content
    assert body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n"), "the CRLF before the next boundary is required"
        headers = {}
        for line in head.decode().strip().split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, data[:-2]))
    return parts


@pytest.fixture
def scan(cast, import_phantoms):
    """A phantom scan in a batch assigned to the cast's annotator."""
    (scan,) = import_phantoms(1, slices=12, size=32)
    batch_build(actor=cast.manager, campaign=cast.campaign, scan_ids=[scan.pk], annotator=cast.annotator)
    return scan


def series_url(scan) -> str:
    return f"/dicomweb/studies/{scan.study.study_uid}/series/{scan.series_uid}"


def stored(scan, index: int) -> pydicom.Dataset:
    instance = scan.instances.get(index=index)
    return pydicom.dcmread(Path(settings.MEDIA_ROOT) / scan.storage_dir / instance.file_name)


def test_series_metadata_is_dicom_json_in_volume_order_without_pixels(client, cast, scan):
    client.force_login(cast.annotator)

    response = client.get(series_url(scan) + "/metadata", HTTP_ACCEPT="application/dicom+json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    instances = response.json()
    assert [i["00080018"]["Value"][0] for i in instances] == list(
        scan.instances.order_by("index").values_list("sop_uid", flat=True)
    )
    first = instances[0]
    assert "7FE00010" not in first
    assert first["00280010"]["Value"] == [32]  # Rows
    assert first["00083002"]["Value"] == [str(stored(scan, 0).file_meta.TransferSyntaxUID)]


def test_frame_is_the_raw_stored_pixel_data_in_one_multipart_part(client, cast, scan):
    client.force_login(cast.annotator)
    ds = stored(scan, 5)

    response = client.get(
        f"{series_url(scan)}/instances/{ds.SOPInstanceUID}/frames/1", HTTP_ACCEPT=FRAME_ACCEPT
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    ((headers, data),) = parse_multipart(response)
    assert (
        headers["content-type"]
        == f"application/octet-stream; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
    )
    assert data == ds.PixelData
    # Stored values, not HU: HU = stored × slope + intercept, as the volume cache holds them.
    volume = np.load(Path(settings.MEDIA_ROOT) / scan.storage_dir / "volume.npy")
    pixels = np.frombuffer(data, dtype="<i2" if ds.PixelRepresentation else "<u2").reshape(32, 32)
    hu = pixels * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(hu, volume[5])


def test_instance_retrieve_returns_the_stored_file(client, cast, scan):
    client.force_login(cast.annotator)
    ds = stored(scan, 0)

    response = client.get(f"{series_url(scan)}/instances/{ds.SOPInstanceUID}")

    assert response.status_code == 200
    ((headers, data),) = parse_multipart(response)
    assert headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID == ds.SOPInstanceUID


def test_series_pixeldata_serves_many_frames_with_their_locations(client, cast, scan):
    client.force_login(cast.annotator)

    response = client.get(series_url(scan) + "/pixeldata?offset=4&count=5")

    assert response.status_code == 200
    parts = parse_multipart(response)
    sops = list(scan.instances.order_by("index").values_list("sop_uid", flat=True))[4:9]
    assert [h["content-location"] for h, _ in parts] == [
        f"http://testserver{series_url(scan)}/instances/{sop}/frames/1" for sop in sops
    ]
    assert all(int(h["content-length"]) == len(d) == 32 * 32 * 2 for h, d in parts)
    assert parts[0][1] == stored(scan, 4).PixelData


def test_token_auth_works_like_the_api(client, cast, scan):
    token = Token.objects.create(user=cast.annotator)

    response = client.get(series_url(scan) + "/metadata", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200


def test_anonymous_requests_are_refused(client, scan):
    response = client.get(series_url(scan) + "/metadata")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("who", ["outsider", "annotator2"])
def test_scans_a_user_may_not_see_answer_404(client, cast, scan, who):
    # The outsider belongs to another institution; annotator2 has no batch with this scan.
    client.force_login(getattr(cast, who))
    sop = scan.instances.first().sop_uid

    for path in ["/metadata", f"/instances/{sop}", f"/instances/{sop}/frames/1", "/pixeldata"]:
        response = client.get(series_url(scan) + path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


def test_the_data_manager_of_the_institution_sees_every_scan(client, cast, import_phantoms):
    (scan,) = import_phantoms(1, slices=12, size=32)
    client.force_login(cast.manager)

    assert client.get(series_url(scan) + "/metadata").status_code == 200


def test_unknown_instance_frame_or_mismatched_study_answer_404(client, cast, scan):
    client.force_login(cast.annotator)
    sop = scan.instances.first().sop_uid

    assert client.get(f"{series_url(scan)}/instances/1.2.3/frames/1").status_code == 404
    assert client.get(f"{series_url(scan)}/instances/{sop}/frames/2").status_code == 404
    wrong_study = f"/dicomweb/studies/1.2.3/series/{scan.series_uid}/metadata"
    assert client.get(wrong_study).status_code == 404


def test_only_get_and_head_are_allowed(client, cast, scan):
    client.force_login(cast.annotator)

    assert client.post(series_url(scan) + "/metadata").status_code == 405
    assert client.head(series_url(scan) + "/metadata").status_code == 200


def test_frame_fast_path_and_header_parse_agree(scan):
    from imaging.dicomweb.wado import frame_bytes

    instance = scan.instances.get(index=3)
    path = Path(settings.MEDIA_ROOT) / scan.storage_dir / instance.file_name

    fast = frame_bytes(path, 32 * 32 * 2)
    parsed = frame_bytes(path)
    wrong_size_falls_back = frame_bytes(path, 32 * 32 * 2 + 8)

    assert fast == parsed == wrong_size_falls_back
    assert fast[0] == stored(scan, 3).PixelData


def test_series_metadata_is_cached_on_disk_for_the_next_process(client, cast, scan):
    from imaging.dicomweb import wado as dicomweb

    dicomweb._metadata_cache._items.clear()
    client.force_login(cast.annotator)
    first = client.get(series_url(scan) + "/metadata").content
    cache_files = list((Path(settings.DATA_DIR) / "cache" / "dicomweb").glob(f"scan-{scan.pk}-*.json"))
    assert len(cache_files) == 1

    dicomweb._metadata_cache._items.clear()  # a fresh process: only the disk cache is left
    assert client.get(series_url(scan) + "/metadata").content == first
