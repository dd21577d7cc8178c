"""The synthetic chest CT phantom and its DICOM writer: what demo data, ingest and model tests rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from demo.phantom import (
    CONSOLIDATION,
    GGO,
    LEFT_LUNG,
    RIGHT_LUNG,
    Phantom,
    load_ground_truth,
    make_phantom,
    nrrd_to_dicom_series,
    save_ground_truth,
    write_ct_series,
    write_phantom_study,
)
from tests.conftest import lung1_file

SHAPE = (32, 128, 128)


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(*SHAPE, seed=0)


def read_series(paths: list[Path]) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Datasets sorted by position along the slice normal, and the HU volume they hold."""
    datasets = sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: float(ds.ImagePositionPatient[2]))
    volume = np.stack(
        [ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept) for ds in datasets]
    )
    return datasets, volume


def strings_in(ds: pydicom.Dataset, depth: int = 0):
    """(depth, tag, text) for every text value, walking into sequences and private blocks."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from strings_in(item, depth + 1)
        elif elem.VR in ("PN", "LO", "LT", "SH", "ST", "UT"):
            yield depth, elem.tag, str(elem.value)


def test_arrays_have_the_documented_shapes_and_types(phantom):
    assert phantom.hu.shape == phantom.lesions.shape == phantom.lungs.shape == SHAPE
    assert phantom.hu.dtype == np.int16
    assert phantom.lesions.dtype == phantom.lungs.dtype == np.uint8
    assert set(np.unique(phantom.lesions)) <= {0, GGO, CONSOLIDATION}
    assert set(np.unique(phantom.lungs)) == {0, RIGHT_LUNG, LEFT_LUNG}
    assert len(phantom.spacing) == len(phantom.origin) == 3
    assert phantom.spacing[0] == phantom.spacing[1] > 0


def test_default_spacing_fits_the_body_to_about_80_percent_of_the_field_of_view():
    square = make_phantom(8, 128, 128, seed=2, lesions=0)
    body_cols = np.flatnonzero((square.hu[4] > -500).any(axis=0))
    assert 0.7 < (body_cols[-1] - body_cols[0] + 1) / 128 < 0.9
    wide = make_phantom(8, 96, 160, seed=2, lesions=0)  # rows limit: the body must still fit
    assert (wide.hu[4, [0, -1], :] < -500).all() and (wide.hu[4, :, [0, -1]] < -500).all()


def test_tissues_have_ct_like_hounsfield_units(phantom):
    hu, lesions, lungs = phantom.hu, phantom.lesions, phantom.lungs
    assert abs(np.median(hu[(lungs > 0) & (lesions == 0)]) + 850) < 30
    assert abs(np.median(hu[lesions == GGO]) + 600) < 60
    assert abs(np.median(hu[lesions == CONSOLIDATION]) + 100) < 75
    assert abs(np.median(hu[:, :3, :]) + 1000) < 30  # air in the corner of the field of view
    assert hu.max() > 500  # bone
    assert hu.min() >= -1024
    # Lung texture plus CT noise: robust sigma (vessels aside) near 30–35 HU.
    lung = hu[(lungs > 0) & (lesions == 0)]
    assert 25 < 1.4826 * np.median(np.abs(lung - np.median(lung))) < 45


def test_lesions_of_both_classes_lie_inside_the_lungs(phantom):
    assert np.all(phantom.lungs[phantom.lesions > 0] > 0)
    for cls in (GGO, CONSOLIDATION):
        _, pieces = ndimage.label(phantom.lesions == cls)
        assert pieces >= 2, f"class {cls} has {pieces} lesion(s)"


def test_right_lung_is_on_the_image_left(phantom):
    """LPS: +x is the patient's left, so the right lung fills the low columns."""
    _, _, cols = np.nonzero(phantom.lungs == RIGHT_LUNG)
    _, _, cols_left = np.nonzero(phantom.lungs == LEFT_LUNG)
    assert cols.max() < SHAPE[2] / 2 <= cols_left.min()


def test_lung_apex_is_at_the_highest_slice_index(phantom):
    area = (phantom.lungs > 0).sum(axis=(1, 2))
    assert area[-1] < area[SHAPE[0] // 2] / 4  # index 0 is the smallest z: base first, apex last


def test_the_same_seed_gives_the_same_phantom_and_another_seed_does_not(phantom):
    again = make_phantom(*SHAPE, seed=0)
    assert np.array_equal(again.hu, phantom.hu) and np.array_equal(again.lesions, phantom.lesions)
    other = make_phantom(*SHAPE, seed=1)
    assert not np.array_equal(other.lesions, phantom.lesions)


def test_lesion_count_can_be_set_and_follow_ups_share_anatomy():
    healthy = make_phantom(*SHAPE, seed=4, lesions=0)
    assert not healthy.lesions.any()
    one_each = make_phantom(*SHAPE, seed=4, lesions=2)
    assert set(np.unique(one_each.lesions)) == {0, GGO, CONSOLIDATION}
    follow_up = make_phantom(*SHAPE, seed=5, anatomy_seed=4, lesions=0)
    assert np.array_equal(follow_up.lungs, healthy.lungs)


def test_series_reads_back_exactly_when_sorted_by_position(phantom, tmp_path):
    paths = write_ct_series(
        phantom.hu,
        tmp_path,
        spacing=phantom.spacing,
        origin=phantom.origin,
        patient_id="P1",
        patient_name="DOE^JANE",
    )
    assert len(paths) == SHAPE[0]
    datasets, volume = read_series(paths)
    assert np.array_equal(volume, phantom.hu)
    first = datasets[0]
    assert first.Modality == "CT" and first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([phantom.spacing[1], phantom.spacing[0]])
    assert [float(v) for v in first.ImagePositionPatient] == pytest.approx(phantom.origin)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    steps = np.diff([float(ds.ImagePositionPatient[2]) for ds in datasets])
    assert steps == pytest.approx(np.full(SHAPE[0] - 1, phantom.spacing[2]), abs=1e-4)
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == SHAPE[0]
    assert [ds.InstanceNumber for ds in datasets] == list(range(1, SHAPE[0] + 1))


def test_shuffled_file_names_do_not_reveal_slice_order(phantom, tmp_path):
    paths = write_ct_series(
        phantom.hu,
        tmp_path,
        spacing=phantom.spacing,
        origin=phantom.origin,
        patient_id="P1",
        patient_name="DOE^JANE",
    )
    by_name = sorted(paths, key=lambda p: p.name)
    assert by_name != paths  # paths come back in slice order; names sort differently
    assert all(len(p.stem) == 20 and int(p.stem, 16) >= 0 for p in paths)


def test_ascending_file_names_follow_slice_order(phantom, tmp_path):
    paths = write_ct_series(
        phantom.hu[:4],
        tmp_path,
        spacing=phantom.spacing,
        origin=phantom.origin,
        patient_id="P1",
        patient_name="DOE^JANE",
        slice_order="ascending",
    )
    assert [p.name for p in paths] == sorted(p.name for p in paths) == [f"IM0000{i}.dcm" for i in range(1, 5)]


def test_extra_phi_hides_the_patient_name_in_nested_and_private_tags(phantom, tmp_path):
    paths = write_ct_series(
        phantom.hu[:2],
        tmp_path,
        spacing=phantom.spacing,
        origin=phantom.origin,
        patient_id="MRN123",
        patient_name="ROE^RICHARD",
        extra_phi=True,
    )
    ds = pydicom.dcmread(paths[0])
    hits = [(depth, tag) for depth, tag, text in strings_in(ds) if "RICHARD" in text]
    assert any(depth >= 2 for depth, _ in hits)  # OriginalAttributesSequence > ModifiedAttributesSequence
    assert any(tag.is_private and depth == 0 for depth, tag in hits)
    assert any(tag.is_private and depth >= 1 for depth, tag in hits)  # a private sequence item
    assert any("MRN123" in text for depth, _, text in strings_in(ds) if depth >= 1)
    plain = pydicom.dcmread(
        write_ct_series(
            phantom.hu[:1],
            tmp_path / "plain",
            spacing=phantom.spacing,
            origin=phantom.origin,
            patient_id="MRN123",
            patient_name="ROE^RICHARD",
        )[0]
    )
    assert "OtherPatientIDsSequence" not in plain and not any(elem.tag.is_private for elem in plain)


def test_study_folder_holds_series_and_aligned_ground_truth(tmp_path):
    folder = write_phantom_study(
        tmp_path, slices=16, rows=96, cols=96, seed=3, patient_id="P9", patient_name="MILLER^SAM"
    )
    paths = sorted(folder.glob("*.dcm"))
    datasets, volume = read_series(paths)
    truth = load_ground_truth(folder / "ground_truth.npz")
    assert truth.lesions.shape == truth.lungs.shape == volume.shape
    assert truth.origin == pytest.approx([float(v) for v in datasets[0].ImagePositionPatient])
    assert np.all(volume[truth.lesions == GGO] > -900)  # lesion voxels carry lesion HU, slice for slice


def test_ground_truth_round_trips(phantom, tmp_path):
    path = save_ground_truth(phantom, tmp_path)
    truth = load_ground_truth(path)
    assert np.array_equal(truth.lesions, phantom.lesions) and np.array_equal(truth.lungs, phantom.lungs)
    assert truth.spacing == pytest.approx(phantom.spacing) and truth.origin == pytest.approx(phantom.origin)


def test_nrrd_volume_becomes_a_series_with_the_same_pixels_and_geometry(tmp_path):
    import SimpleITK as sitk

    lung1 = lung1_file("lung1_image.nrrd")
    image = sitk.ReadImage(str(lung1))
    paths = nrrd_to_dicom_series(lung1, tmp_path, patient_id="L1", patient_name="LUNG^ONE")
    datasets, volume = read_series(paths)
    assert np.array_equal(volume, sitk.GetArrayFromImage(image))
    assert [float(v) for v in datasets[0].ImagePositionPatient] == pytest.approx(image.GetOrigin())
    assert [float(v) for v in datasets[0].PixelSpacing] == pytest.approx(image.GetSpacing()[:2])
    assert float(datasets[1].ImagePositionPatient[2]) - float(
        datasets[0].ImagePositionPatient[2]
    ) == pytest.approx(image.GetSpacing()[2])
