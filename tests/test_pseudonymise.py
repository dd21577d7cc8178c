"""Tests of imaging.pseudonymise (pure functions: no Django, no database)."""

from __future__ import annotations

import copy
import datetime as dt
import io
import re
import time

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ImplicitVRLittleEndian

from imaging.pseudonymise import (
    DEIDENTIFICATION_METHOD,
    PatientKey,
    date_offset_for,
    pseudonym_for,
    pseudonymise,
    remap_uid,
)
from tests.phi import assert_no_phi

KEY = b"test-secret-key-0123456789abcdef"
ISSUER = "ST-ELSEWHERE"
MRN = "MRN-123456"

# UIDs of CT_small.dcm plus our own; all must be gone after pseudonymisation.
SOP_UID = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
STUDY_UID = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
SERIES_UID = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
FOR_UID = "1.3.6.1.4.1.5962.1.4.1.1.20040119072730.12322"
CREATOR_UID = "1.3.6.1.4.1.5962.3"
REFERENCED_UID = "1.2.3.4.5.6.7.8.9.424242"
ORIGINAL_UIDS = [SOP_UID, STUDY_UID, SERIES_UID, FOR_UID, CREATOR_UID, REFERENCED_UID]

# Original dates of CT_small.dcm and of the PHI we add.
ORIGINAL_DATES = ["20040119", "19970430", "19600203", "20040118", "20040117"]

FORBIDDEN = [
    "DOE",
    "JANE",
    MRN,
    "12 Elm Street",
    "Springfield",
    "555-0199",
    "CTSCAN-ROOM7",
    "SN-998877",
    "ACC-55501",
    "STUDY-4242",
    "WELBY",
    "TECHNOLOGIST",
    "St Elsewhere",
    "Gotham",
    "JFK IMAGING",  # original institution of CT_small
    "CT01_OC0",  # original station name of CT_small
    "CLUNIE1",  # original source AE title of CT_small
    "Uncompressed",  # original image comments of CT_small
    "REQ-777",
    "SMITH",
    "Radiology Dept",
    *ORIGINAL_UIDS,
    *ORIGINAL_DATES,
]


def patient_key(mrn: str = MRN, issuer: str = ISSUER) -> PatientKey:
    return PatientKey(pseudonym_for(mrn, issuer, KEY), date_offset_for(mrn, issuer, KEY))


def shifted(date: str, days: int) -> str:
    day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) + dt.timedelta(days=days)
    return day.strftime("%Y%m%d")


def code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def phi_dataset() -> pydicom.FileDataset:
    """CT_small.dcm (real pixel data) stuffed with PHI in many places."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "DOE^JANE"
    ds.PatientID = MRN
    ds.IssuerOfPatientID = ISSUER
    ds.PatientBirthDate = "19600203"
    ds.PatientAddress = "12 Elm Street, Springfield"
    ds.PatientTelephoneNumbers = "555-0199"
    ds.PatientAge = "044Y"
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.OperatorsName = "TECHNOLOGIST^TOM"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.InstitutionAddress = "1 Hospital Road, Gotham"
    ds.InstitutionalDepartmentName = "Radiology Dept"
    ds.StationName = "CTSCAN-ROOM7"
    ds.DeviceSerialNumber = "SN-998877"
    ds.AccessionNumber = "ACC-55501"
    ds.StudyID = "STUDY-4242"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "LUNG 1.25mm"
    ds.AcquisitionDateTime = "20040119112936.123456+0100"

    # Other Patient IDs Sequence, nested two levels deep.
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "JANE DOE HOSPITAL MRN-123456"
    qualifiers.UniversalEntityIDType = "DNS"
    other_id = Dataset()
    other_id.PatientID = MRN + "-OLD"
    other_id.TypeOfPatientID = "TEXT"
    other_id.IssuerOfPatientIDQualifiersSequence = Sequence([qualifiers])
    ds.OtherPatientIDsSequence = Sequence([other_id])

    # Request Attributes Sequence with a nested person name and dates.
    step = Dataset()
    step.RequestedProcedureID = "REQ-777"
    step.ScheduledProcedureStepStartDate = "20040118"
    scheduled = Dataset()
    scheduled.ScheduledPerformingPhysicianName = "SMITH^ANNA"
    scheduled.ScheduledProcedureStepStartDate = "20040117"
    step.ScheduledStepAttributesSequence = Sequence([scheduled])
    ds.RequestAttributesSequence = Sequence([step])

    # A kept sequence (references are needed) holding PHI the table does not name:
    # the generic PN / DA / DT / UI / private rules must catch it.
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = REFERENCED_UID
    ref.EvaluatorName = "DOE^JANE"
    ref.ContentDate = "20040119"
    ref.ReferencedDateTime = "20040119101112"
    ref.private_block(0x0041, "ACME NESTED", create=True).add_new(0x01, "LO", MRN)
    purpose = Dataset()
    purpose.CodeValue = "121311"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Localizer"
    purpose.ContentCreatorName = "JANE^DOE"
    purpose.ContentDate = "19970430"
    ref.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.ReferencedImageSequence = Sequence([ref])

    # A public PN stored with VR UN by a careless writer.
    ds.add(DataElement(0x00142006, "UN", b"DOE^JANE"))  # Evaluator Name

    # Overlay comments (repeating group 60xx) naming the patient.
    ds.add_new(0x60004000, "LT", "drawn for DOE")

    # A private block with the patient's name and MRN.
    block = ds.private_block(0x0033, "ACME PHI", create=True)
    block.add_new(0x01, "LO", "DOE^JANE")
    block.add_new(0x02, "LO", MRN)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def roundtrip(ds: Dataset) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


@pytest.fixture
def original() -> pydicom.FileDataset:
    return phi_dataset()


@pytest.fixture(params=["in_memory", "from_file"])
def result(request: pytest.FixtureRequest, original: pydicom.FileDataset) -> pydicom.FileDataset:
    """Pseudonymised, written and read back.  "from_file" is the real import path: the
    elements are still undecoded (raw) when pseudonymise sees them."""
    ds = copy.deepcopy(original) if request.param == "in_memory" else roundtrip(original)
    pseudonymise(ds, patient_key(), KEY)
    return roundtrip(ds)


# ------------------------------------------------------------------------- PHI removal


def test_fixture_really_contains_phi(original: pydicom.FileDataset) -> None:
    # Guards the other tests: the helper must see PHI before pseudonymisation.
    hits = assert_no_phi(original, FORBIDDEN)
    for path in (
        "PatientName",
        "OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID",
        "ReferencedImageSequence[0].EvaluatorName",
        "ReferencedImageSequence[0].(0041,1001)",
        "(0033,1001)",
        "file_meta.MediaStorageSOPInstanceUID",
        "file_meta.SourceApplicationEntityTitle",
    ):
        assert path in hits


def test_no_forbidden_value_in_any_element(result: pydicom.FileDataset) -> None:
    assert assert_no_phi(result, FORBIDDEN) == []


def test_no_forbidden_string_in_file_bytes(original: pydicom.FileDataset) -> None:
    ds = copy.deepcopy(original)
    pseudonymise(ds, patient_key(), KEY)
    raw = to_bytes(ds)
    original_raw = to_bytes(original)
    for needle in FORBIDDEN:
        for variant in {needle, needle.upper()}:
            encoded = variant.encode("latin-1")
            if encoded in original_raw:  # proves the needle was in the input at all
                assert encoded not in raw, variant
    # The byte-level check would be empty if the needles were never written.
    assert b"DOE^JANE" in original_raw and MRN.encode() in original_raw


def test_private_tags_removed_everywhere(result: pydicom.FileDataset) -> None:
    def private_tags(ds: Dataset) -> list[int]:
        found = []
        for elem in ds:
            if elem.tag.is_private:
                found.append(elem.tag)
            if elem.VR == "SQ":
                for item in elem.value:
                    found.extend(private_tags(item))
        return found

    assert private_tags(result) == []


def test_no_person_name_survives_except_pseudonym(result: pydicom.FileDataset) -> None:
    names: dict[str, str] = {}

    def collect(ds: Dataset, prefix: str) -> None:
        for elem in ds:
            if elem.VR == "PN" and elem.value:
                names[prefix + elem.keyword] = str(elem.value)
            if elem.VR == "SQ":
                for item in elem.value:
                    collect(item, prefix + elem.keyword + ".")

    collect(result, "")
    assert names == {"PatientName": result.PatientID}


def test_identity_attributes_replaced_removed_or_emptied(result: pydicom.FileDataset) -> None:
    key = patient_key()
    assert result.PatientName == key.pseudonym
    assert result.PatientID == key.pseudonym
    # Type 2 in CT: present but empty.
    for keyword in ("PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyID"):
        assert keyword in result and not result[keyword].value, keyword
    for keyword in (
        "PatientAddress",
        "PatientTelephoneNumbers",
        "IssuerOfPatientID",
        "OtherPatientIDsSequence",
        "RequestAttributesSequence",
        "OperatorsName",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "ImageComments",
        "TimezoneOffsetFromUTC",
        "DataSetTrailingPadding",
    ):
        assert keyword not in result, keyword
    assert "SourceApplicationEntityTitle" not in result.file_meta
    # pydicom, which writes the file, names itself; the scanner's software is gone.
    assert result.file_meta.get("ImplementationVersionName") != "DCTOOL100"
    assert result.file_meta.ImplementationClassUID == PYDICOM_IMPLEMENTATION_UID
    assert not [elem.tag for elem in result if elem.tag.group == 0x6000]


def test_clinically_needed_attributes_kept(
    original: pydicom.FileDataset, result: pydicom.FileDataset
) -> None:
    for keyword in (
        "Modality",
        "Manufacturer",
        "ManufacturerModelName",
        "KVP",
        "SliceThickness",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "RescaleIntercept",
        "RescaleSlope",
        "Rows",
        "Columns",
        "BitsAllocated",
        "PixelRepresentation",
        "ConvolutionKernel",
        "PatientAge",
        "PatientSex",
        "PatientWeight",
        "ContrastBolusAgent",
        "StudyDescription",
        "SeriesDescription",
        "StudyTime",
        "SeriesTime",
        "AcquisitionTime",
    ):
        assert result[keyword].value == original[keyword].value, keyword
    assert result.PixelData == original.PixelData
    assert (result.pixel_array == original.pixel_array).all()


def test_profile_markers(result: pydicom.FileDataset) -> None:
    assert result.PatientIdentityRemoved == "YES"
    assert result.DeidentificationMethod == DEIDENTIFICATION_METHOD
    assert result.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {(i.CodeValue, i.CodingSchemeDesignator) for i in result.DeidentificationMethodCodeSequence}
    assert {("113100", "DCM"), ("113107", "DCM")} <= codes


# ------------------------------------------------------------------------------ dates


def test_dates_shifted_by_patient_offset(original: pydicom.FileDataset, result: pydicom.FileDataset) -> None:
    days = patient_key().date_offset_days
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"):
        assert result[keyword].value == shifted(original[keyword].value, days), keyword
    ref = result.ReferencedImageSequence[0]
    assert ref.ContentDate == shifted("20040119", days)
    assert ref.PurposeOfReferenceCodeSequence[0].ContentDate == shifted("19970430", days)
    # DT keeps its time of day and UTC offset.
    assert result.AcquisitionDateTime == shifted("20040119", days) + "112936.123456+0100"
    assert ref.ReferencedDateTime == shifted("20040119", days) + "101112"


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the invalid dates are the point
def test_date_edge_cases() -> None:
    ds = Dataset()  # no PatientName / PatientID, no file meta
    ds.StudyDate = ""  # empty stays empty
    ds.SeriesDate = "2004-01-19"  # not DICOM: unparseable, removed
    ds.ContentDate = "20040230"  # no such day: removed
    ds.CalibrationDate = ["20040119", "20040120"]  # multi-valued
    ds.AcquisitionDateTime = "2004"  # year precision
    ds.FrameReferenceDateTime = "200401"  # month precision
    ds.StartAcquisitionDateTime = "20040119"  # date only
    ds.EndAcquisitionDateTime = "garbage"
    ds.PatientAge = "093Y"
    key = PatientKey("CT-TEST", -400)
    pseudonymise(ds, key, KEY)
    assert ds.StudyDate == ""
    assert "SeriesDate" not in ds and "ContentDate" not in ds
    assert list(ds.CalibrationDate) == [shifted("20040119", -400), shifted("20040120", -400)]
    assert ds.AcquisitionDateTime == "2002"  # 2004-01-01 - 400 days = 2002-11-27
    assert ds.FrameReferenceDateTime == "200211"
    assert ds.StartAcquisitionDateTime == shifted("20040119", -400)
    assert "EndAcquisitionDateTime" not in ds
    assert ds.PatientAge == "090Y"  # ages over 89 are capped
    # No file meta to clean; the pseudonym is written even over a fresh dataset.
    assert ds.PatientID == ds.PatientName == "CT-TEST"


# --------------------------------------------------------------------- stable mapping


def test_same_patient_same_pseudonym_and_offset() -> None:
    assert pseudonym_for(MRN, ISSUER, KEY) == pseudonym_for(MRN + " ", ISSUER, KEY)
    assert date_offset_for(MRN, ISSUER, KEY) == date_offset_for(MRN, ISSUER, KEY)
    assert re.fullmatch(r"CT-[A-Z2-7]{10}", pseudonym_for(MRN, ISSUER, KEY))


def test_different_patients_differ() -> None:
    pseudonyms = {pseudonym_for(f"MRN-{i}", ISSUER, KEY) for i in range(1000)}
    offsets = {date_offset_for(f"MRN-{i}", ISSUER, KEY) for i in range(1000)}
    assert len(pseudonyms) == 1000
    assert len(offsets) > 500  # 3286 possible values
    # Same MRN at another hospital is another patient; another key another mapping.
    assert pseudonym_for(MRN, "OTHER-HOSPITAL", KEY) != pseudonym_for(MRN, ISSUER, KEY)
    assert pseudonym_for(MRN, ISSUER, b"other key") != pseudonym_for(MRN, ISSUER, KEY)


def test_offsets_always_in_the_past_and_bounded() -> None:
    offsets = [date_offset_for(f"P{i}", ISSUER, KEY) for i in range(5000)]
    assert all(-3650 <= o <= -365 for o in offsets)
    assert min(offsets) < -3000 and max(offsets) > -700  # spread over the range


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ValueError):
        pseudonym_for(MRN, ISSUER, b"")
    with pytest.raises(ValueError):
        pseudonym_for("  ", ISSUER, KEY)
    with pytest.raises(ValueError):
        remap_uid("1.2.3", b"")


def test_remap_uid_deterministic_valid_and_distinct() -> None:
    new = remap_uid(STUDY_UID, KEY)
    assert new == remap_uid(STUDY_UID, KEY) == remap_uid(STUDY_UID + "\x00", KEY)
    assert new != remap_uid(SERIES_UID, KEY)
    assert new != remap_uid(STUDY_UID, b"other key")
    assert len(new) <= 64 and re.fullmatch(r"2\.25\.(0|[1-9]\d*)", new)
    assert remap_uid("", KEY) == ""
    many = {remap_uid(f"1.2.3.{i}", KEY) for i in range(10000)}
    assert len(many) == 10000


def test_uids_remapped_consistently(original: pydicom.FileDataset, result: pydicom.FileDataset) -> None:
    assert result.SOPInstanceUID == remap_uid(SOP_UID, KEY)
    assert result.StudyInstanceUID == remap_uid(STUDY_UID, KEY)
    assert result.SeriesInstanceUID == remap_uid(SERIES_UID, KEY)
    assert result.FrameOfReferenceUID == remap_uid(FOR_UID, KEY)
    ref = result.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == remap_uid(REFERENCED_UID, KEY)
    # Class and syntax UIDs name kinds of things, not instances: kept.
    assert result.SOPClassUID == original.SOPClassUID == CTImageStorage
    assert ref.ReferencedSOPClassUID == CTImageStorage
    assert result.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert result.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID


def test_second_slice_of_same_series_joins_it() -> None:
    first, second = phi_dataset(), phi_dataset()
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = "1.2.3.999"
    for ds in (first, second):
        pseudonymise(ds, patient_key(), KEY)
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.PatientID == second.PatientID and first.StudyDate == second.StudyDate


def test_descriptor_naming_the_patient_is_dropped(original: pydicom.FileDataset) -> None:
    original.SeriesDescription = "Jane Doe chest follow-up"
    pseudonymise(original, patient_key(), KEY)
    assert "SeriesDescription" not in original
    assert original.StudyDescription == "CT CHEST"


def test_implicit_vr_file(original: pydicom.FileDataset) -> None:
    # Implicit VR files carry no VR: the walk must get it from the dictionary.
    original.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = roundtrip(original)
    assert ds.get_item("PatientName").VR is None
    pseudonymise(ds, patient_key(), KEY)
    back = roundtrip(ds)
    assert assert_no_phi(back, FORBIDDEN) == []
    assert back.StudyDate == shifted("20040119", patient_key().date_offset_days)
    assert back.PixelData == original.PixelData
    assert back.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_assert_no_phi_reports_paths() -> None:
    ds = Dataset()
    ds.PatientComments = "call jane"
    item = Dataset()
    item.add_new(0x00091010, "OB", b"xxJANExx")
    ds.ReferencedImageSequence = Sequence([item])
    assert assert_no_phi(ds, ["Jane"]) == ["PatientComments", "ReferencedImageSequence[0].(0009,1010)"]
    assert assert_no_phi(ds, ["nobody"]) == []


# ----------------------------------------------------------------------------- timing


def test_time_per_slice(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a timed test: it prints the per-slice time and only checks that it ran.

    Slices are parsed from bytes beforehand (I/O is not timed) and are still undecoded,
    as in a real import.  Best of three rounds, to be less sensitive to a busy machine.
    """
    raw = to_bytes(phi_dataset())
    key = patient_key()
    rounds = []
    for _ in range(3):
        slices = [pydicom.dcmread(io.BytesIO(raw)) for _ in range(300)]
        start = time.perf_counter()
        for ds in slices:
            pseudonymise(ds, key, KEY)
        rounds.append((time.perf_counter() - start) * 1000 / len(slices))
        assert all(ds.PatientIdentityRemoved == "YES" for ds in slices)
    with capsys.disabled():
        print(f"\npseudonymise: {min(rounds):.3f} ms per CT slice header (best of 3 x 300 slices)")
