"""The PS3.15 attribute table behind imaging.pseudonymise: taken from dicom-anonymizer,
every attribute of it handled by exactly one CurateCT action (pure: no Django)."""

from __future__ import annotations

import copy
import datetime as dt
import io
import pkgutil
import re
import subprocess
import sys
from collections import Counter

import pydicom
import pytest
from dicomanonymizer import dicom_anonymization_databases
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from imaging.pseudonymise import (
    ACTIONS,
    AGE,
    CLEAN,
    EMPTY,
    KEEP,
    PROFILE,
    PS315_EDITION,
    PSEUDONYM,
    REMAP,
    REMOVE,
    SHIFT,
    WALK,
    PatientKey,
    ProfileError,
    profile_from_table,
    pseudonymise,
    remap_uid,
    table_for_edition,
)

KEY = b"test-secret-key-0123456789abcdef"
PATIENT = PatientKey("CT-PROFILE01", -400)

# What CurateCT keeps of what the table would remove, empty or replace, and why it may.
RETAINED = {"PatientSex", "PatientSize", "PatientWeight"}  # option 113108
DESCRIPTIONS = {"StudyDescription", "SeriesDescription", "ProtocolName", "ContrastBolusAgent"}


def entry_tag(entry: tuple[int, ...]) -> int:
    return entry[0] << 16 | entry[1]


def edition_key(edition: str) -> tuple[int, str]:
    match = re.fullmatch(r"(\d{4})([a-z]?)", edition)
    assert match, edition
    return int(match[1]), match[2]


def shifted(date: str, days: int) -> str:
    day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) + dt.timedelta(days=days)
    return day.strftime("%Y%m%d")


# ------------------------------------------------------------------------ the table


def test_pinned_edition_is_the_newest_the_package_ships() -> None:
    # An upgrade of dicom-anonymizer that brings a newer table fails here, so taking the
    # new edition (and reviewing what it changes) is a deliberate step.
    editions = [
        module.name.removeprefix("dicomfields_")
        for module in pkgutil.iter_modules(dicom_anonymization_databases.__path__)
        if module.name.startswith("dicomfields_")
    ]
    assert max(editions, key=edition_key) == PS315_EDITION


def test_every_table_entry_has_exactly_one_curatect_action() -> None:
    # The package's own selector, not our loader, says what the table holds.
    categories = dicom_anonymization_database_selector(f"dicomfields_{PS315_EDITION}")
    every = [tuple(entry) for entry in categories.pop("ALL_TAGS")]
    assert len(every) > 600  # the real table, not an empty module
    counts = Counter(tuple(entry) for entries in categories.values() for entry in entries)
    assert [entry for entry, n in counts.items() if n > 1] == []  # one standard action each
    assert set(counts) == set(every)
    assert set(PROFILE) == set(every)
    assert set(PROFILE.values()) <= ACTIONS
    assert table_for_edition(PS315_EDITION).keys() >= categories.keys()


def test_standard_letters_map_to_curatect_policy() -> None:
    table = table_for_edition(PS315_EDITION)
    for category, entries in table.items():
        letters = set(category.removesuffix("_TAGS").replace("_STAR", "*").split("_"))
        for entry in entries:
            action = PROFILE[entry]
            if len(entry) == 4 or entry[0] == 0 or not dictionary_has_tag(entry_tag(entry)):
                assert action == REMOVE, entry
                continue
            tag = entry_tag(entry)
            keyword, vr = keyword_for_tag(tag), dictionary_VR(tag)
            if keyword in ("PatientName", "PatientID"):
                assert action == PSEUDONYM
            elif keyword == "PatientBirthDate":
                assert action == EMPTY
            elif vr in ("DA", "DT"):
                assert action in (SHIFT, REMOVE), keyword  # removed: _REMOVED_DATES_AND_TIMES
            elif vr == "TM":
                assert action in (KEEP, REMOVE), keyword
            elif "U" in letters or (vr == "UI" and "D" in letters):
                assert action == REMAP, keyword
            elif "U*" in letters:
                assert action == WALK, keyword
            elif keyword in RETAINED:
                assert action == KEEP
            elif keyword == "PatientAge":
                assert action == AGE
            elif keyword in DESCRIPTIONS:
                assert action == CLEAN
            elif action == EMPTY:
                assert "Z" in letters and keyword in ("ReferringPhysicianName", "AccessionNumber", "StudyID")
            else:
                assert action == REMOVE, (category, keyword)


def test_worked_examples_of_the_policy() -> None:
    def action(keyword: str) -> str:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        return PROFILE[(tag >> 16, tag & 0xFFFF)]

    assert action("StudyInstanceUID") == REMAP  # U
    assert action("AnnotationGroupUID") == REMAP  # D on a UID: a consistent new one
    assert action("StudyDate") == SHIFT  # Z
    assert action("CalibrationDate") == SHIFT  # X, modified under option 113107
    assert action("AdmittingDate") == REMOVE  # X, and CurateCT removes visit dates
    assert action("StudyTime") == KEEP  # Z: a whole-day shift keeps the time of day
    assert action("ReferencedImageSequence") == WALK  # X/Z/U*
    assert action("ContentSequence") == REMOVE  # D: no dummy values
    assert action("InstitutionName") == REMOVE  # X/Z/D
    assert action("AccessionNumber") == EMPTY  # Z, type 2 in CT
    assert PROFILE[(0x5000, 0x0000, 0xFF00, 0x0000)] == REMOVE  # curves
    assert PROFILE[(0x0000, 0x1001)] == REMOVE  # a command element, U in the table


# ------------------------------------------------------------- every attribute, applied

_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE"}


def value_for(vr: str, n: int) -> object:
    if vr in _TEXT_VRS:
        return "VALUE" + str(n) if vr in ("CS", "AE") else f"Some text {n}"
    values: dict[str, object] = {
        "AS": "044Y",
        "DA": "20040119",
        "DT": "20040119101112",
        "TM": "101112",
        "DS": "1.5",
        "IS": "7",
        "PN": "DOE^JANE",
        "UI": f"1.2.826.0.1.3680043.9.7777.{n}",
        "UR": "http://example.org/record",
        "US": 3,
        "OB": b"\x01\x02",
        "UN": b"\x01\x02",
    }
    if vr not in values:
        pytest.fail(f"no test value for VR {vr}: extend value_for")
    return values[vr]


def sequence_item(n: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.9.8888.{n}"
    item.add_new(0x00142006, "PN", "DOE^JANE")  # Evaluator Name: not in the table
    item.private_block(0x0041, "ACME NESTED", create=True).add_new(0x01, "LO", "MRN-1")
    return item


def table_dataset() -> tuple[pydicom.FileDataset, dict[int, object]]:
    """A CT dataset with one value for every table attribute pydicom knows, and those values."""
    ds = pydicom.FileDataset("table.dcm", Dataset(), file_meta=FileMetaDataset(), preamble=b"\0" * 128)
    values: dict[int, object] = {}
    for n, entry in enumerate(sorted(e for e in PROFILE if len(e) == 2)):
        tag = entry_tag(entry)
        # Command (0000) and file meta (0002) elements do not belong in a dataset.
        if entry[0] in (0x0000, 0x0002) or not dictionary_has_tag(tag):
            continue
        vr = dictionary_VR(tag)
        value: object = Sequence([sequence_item(n)]) if vr == "SQ" else value_for(vr, n)
        if PROFILE[entry] == CLEAN:
            # Kept unless it names the patient; the accession number's "Some text" would.
            value = "LUNG 1.25 mm"
        ds.add(DataElement(tag, vr, value))
        values[tag] = value
    ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, values


def roundtrip(ds: Dataset) -> pydicom.FileDataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("source", ["in_memory", "from_file"])
def test_every_table_attribute_handled_as_its_action_says(source: str) -> None:
    original, values = table_dataset()
    assert len(values) > 550
    ds = copy.deepcopy(original) if source == "in_memory" else roundtrip(original)
    pseudonymise(ds, PATIENT, KEY)
    result = roundtrip(ds)

    wrong: list[str] = []
    for tag, value in values.items():
        action = PROFILE[(tag >> 16, tag & 0xFFFF)]
        got = result.get(tag)
        name = f"{keyword_for_tag(tag)} ({action})"
        if action == REMOVE:
            if got is not None:
                wrong.append(name)
            continue
        if got is None:
            wrong.append(name + ": missing")
        elif action == EMPTY:
            if got.value not in ("", None, b""):
                wrong.append(f"{name}: {got.value!r}")
        elif action == PSEUDONYM:
            if got.value != PATIENT.pseudonym:
                wrong.append(f"{name}: {got.value!r}")
        elif action in (KEEP, CLEAN, AGE):
            if got.value != value:
                wrong.append(f"{name}: {got.value!r} != {value!r}")
        elif action == SHIFT:
            expected = shifted("20040119", PATIENT.date_offset_days)
            if got.VR == "DT":
                expected += "101112"
            if got.value != expected:
                wrong.append(f"{name}: {got.value!r} != {expected!r}")
        elif action == REMAP:
            if got.value != remap_uid(str(value), KEY):
                wrong.append(f"{name}: {got.value!r}")
        elif action == WALK:
            item = got.value[0]
            original_item = value[0]  # type: ignore[index]
            if (
                item.ReferencedSOPInstanceUID != remap_uid(original_item.ReferencedSOPInstanceUID, KEY)
                or item.ReferencedSOPClassUID != CTImageStorage
                or item[0x00142006].value
                or any(elem.tag.is_private for elem in item)
            ):
                wrong.append(f"{name}: {item}")
    assert wrong == []
    # PS3.10: the file's instance UID follows the dataset's (0002,0003 is U in the table).
    assert result.file_meta.MediaStorageSOPInstanceUID == remap_uid(original.SOPInstanceUID, KEY)
    assert result.PatientIdentityRemoved == "YES"


def test_masked_and_command_entries_removed() -> None:
    ds = Dataset()
    ds.add_new(0x00001001, "UI", "1.2.3.4")  # Requested SOP Instance UID (U, command)
    ds.add_new(0x50020005, "US", 1)  # Curve Dimensions: (50xx,eeee) X
    ds.add_new(0x60003000, "OW", b"\x00\x01")  # Overlay Data: (60xx,3000) X
    ds.add_new(0x60024000, "LT", "drawn for DOE")  # Overlay Comments: (60xx,4000) X
    pseudonymise(ds, PATIENT, KEY)
    assert [t for t in (0x00001001, 0x50020005, 0x60003000, 0x60024000) if t in ds] == []


# --------------------------------------------------------------- fails loudly


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"C_TAGS": [(0x0008, 0x1030)]}, "no CurateCT rule for the PS3.15 action C"),
        ({"X_K_TAGS": [(0x0008, 0x1030)]}, "no CurateCT rule"),
        ({"X_TAGS": [(0x0008, 0x0080)], "Z_TAGS": [(0x0008, 0x0080)]}, "two categories"),
        ({"U_TAGS": [(0x0008, 0x0080)]}, "not a UID"),
        ({"U_TAGS": [(0x0008, 0x0016)]}, "names a kind"),
        ({"X_TAGS": [(0x0010, 0x0000, 0xFF00, 0x0000)]}, "masked entry"),
        ({"X_TAGS": [(0x0010, 0x0010, 0x0001)]}, "malformed"),
        ({"LIST": [(0x0008, 0x0080)]}, "unexpected category"),
    ],
)
def test_table_the_policy_cannot_handle_is_refused(
    table: dict[str, list[tuple[int, ...]]], reason: str
) -> None:
    with pytest.raises(ProfileError, match=reason):
        profile_from_table(table)


def test_attribute_unknown_to_pydicom_only_if_removed() -> None:
    tag = (0x0018, 0xFFF0)
    assert not dictionary_has_tag(entry_tag(tag))
    assert profile_from_table({"X_D_TAGS": [tag]}) == {tag: REMOVE}
    with pytest.raises(ProfileError, match="not in pydicom's dictionary"):
        profile_from_table({"D_TAGS": [tag]})


def test_unhandled_table_stops_the_import() -> None:
    # A later edition with an action CurateCT has no rule for must keep the platform from
    # starting, not let attributes through.
    script = f"""
import sys, types
name = "dicomanonymizer.dicom_anonymization_databases.dicomfields_{PS315_EDITION}"
import dicomanonymizer.dicom_anonymization_databases
fake = types.ModuleType(name)
fake.X_TAGS = [(0x0010, 0x1000)]
fake.C_TAGS = [(0x0008, 0x1030)]
fake.ALL_TAGS = fake.X_TAGS + fake.C_TAGS
sys.modules[name] = fake
import imaging.pseudonymise
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "ProfileError: no CurateCT rule for the PS3.15 action C" in run.stderr
