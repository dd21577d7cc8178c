"""Pseudonymisation of CT DICOM datasets on arrival (DICOM PS3.15 Annex E).

Implements the Basic Application Level Confidentiality Profile.  Its attribute table
(Table E.1-1) is not typed here: it is dicom-anonymizer's table of the edition pinned in
:data:`PS315_EDITION`, mapped at import to CurateCT's actions (:data:`PROFILE`); an entry
the policy has no rule for stops the import.  Options:

* Retain Longitudinal Temporal Information with Modified Dates (113107): every date is
  shifted by one per-patient offset, so intervals between a patient's studies survive
  but calendar dates do not.  Times of day are kept: without the date they identify no
  one, and they order the acquisitions of a study.
* Retain Patient Characteristics (113108): age, sex, size and weight stay, because they
  are coarse and needed to read and model chest CT (dose, lung volume norms).

Beyond the table: private elements, curves, overlays and command elements are removed
whole; every person name, date and UID the table does not name is still emptied, shifted
or remapped; an element no dictionary knows is removed; the file meta keeps only what
describes the file.

Identifiers are derived with HMAC-SHA256 under a secret key held by the platform, so
the same patient / UID always maps to the same pseudonym / UID across imports, while
nobody without the key can recompute the mapping from a known MRN.  UIDs are remapped
under a key bound to the institution (:func:`uid_key_for`): the same original UID sent to
two institutions becomes two unrelated UIDs, so nothing one institution sends can name,
and so reach, another's data.

This module is pure (no Django, no database): the caller looks up or creates a
:class:`PatientKey` for the patient and passes it in.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "DEIDENTIFICATION_METHOD_CODES",
    "PROFILE",
    "PS315_EDITION",
    "PatientKey",
    "ProfileError",
    "date_offset_for",
    "profile_from_table",
    "pseudonym_for",
    "pseudonymise",
    "remap_uid",
    "table_for_edition",
    "uid_key_for",
]

DEIDENTIFICATION_METHOD = "CurateCT PS3.15 basic profile; dates shifted; UIDs remapped"

# (code value, code meaning) from DICOM CID 7050, scheme DCM.
DEIDENTIFICATION_METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)

# Offsets are always into the past and at least a year, so a shifted date can never be
# mistaken for (or be equal to) the real one, and never lands in the future.
_MIN_SHIFT_DAYS = 365
_MAX_SHIFT_DAYS = 3650

# UIDs under the DICOM root name standard things (SOP classes, transfer syntaxes, coding
# schemes, well-known frames of reference), never a patient, study or device.
_DICOM_UID_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class PatientKey:
    """What the pseudonymiser needs to know about one patient (stored by the caller)."""

    pseudonym: str
    date_offset_days: int


# --------------------------------------------------------------------------- identifiers


def _require_key(key: bytes) -> None:
    # An empty or missing key would make every pseudonym a plain hash of the MRN, which
    # anyone holding a list of MRNs could reverse by brute force.
    if not isinstance(key, bytes | bytearray) or not key:
        raise ValueError("pseudonymisation key must be non-empty bytes")


def _patient_message(original_patient_id: str, issuer: str) -> bytes:
    # DICOM pads values with spaces; "123 " and "123" are the same patient.  The issuer
    # keeps MRN 123 of hospital A apart from MRN 123 of hospital B.
    patient_id = (original_patient_id or "").strip()
    if not patient_id:
        raise ValueError("a patient ID is needed to derive a stable pseudonym")
    return ((issuer or "").strip() + "\x00" + patient_id).encode("utf-8")


def pseudonym_for(original_patient_id: str, issuer: str, key: bytes) -> str:
    """Stable pseudonym of a patient: ``"CT-"`` + 10 base32 chars of an HMAC.

    50 bits: collisions stay unlikely for millions of patients; the caller's table
    should still enforce uniqueness.
    """
    _require_key(key)
    digest = hmac.new(key, _patient_message(original_patient_id, issuer), hashlib.sha256)
    return "CT-" + base64.b32encode(digest.digest()).decode("ascii")[:10]


def date_offset_for(original_patient_id: str, issuer: str, key: bytes) -> int:
    """Per-patient date shift in days, in ``[-3650, -365]`` (never zero, always past)."""
    _require_key(key)
    # A label separates this HMAC from the pseudonym's, so the two values are unrelated.
    message = b"date-offset\x00" + _patient_message(original_patient_id, issuer)
    digest = hmac.new(key, message, hashlib.sha256).digest()
    span = _MAX_SHIFT_DAYS - _MIN_SHIFT_DAYS + 1
    return -(_MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)


def uid_key_for(key: bytes, scope: str) -> bytes:
    """The key the UIDs of one institution (``scope``: its slug) are remapped under.

    A platform-wide key would map a UID to the same new UID at every institution, so an
    upload that merely carries another institution's original SeriesInstanceUID would name
    that institution's scan.  Bound to the institution, the mappings are unrelated.
    """
    _require_key(key)
    scope = (scope or "").strip()
    if not scope:
        raise ValueError("UIDs are remapped per institution: a scope is needed")
    # A label separates this HMAC from the pseudonym's and the date offset's.
    return hmac.new(key, b"uid-scope\x00" + scope.encode("utf-8"), hashlib.sha256).digest()


def remap_uid(uid: str, key: bytes) -> str:
    """Deterministic replacement UID: ``"2.25."`` + integer of 16 bytes of an HMAC.

    The same original UID always gives the same new UID (so slices imported on
    different days still join their study and series, and references between
    instances stay intact); different UIDs give different ones (128 bits).  At most
    44 characters, well within the 64 allowed.  An empty UID stays empty.
    """
    _require_key(key)
    # Trailing NUL/space are padding, not part of the UID.
    uid = uid.strip("\x00 ")
    if not uid:
        return ""
    digest = hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


# ------------------------------------------------------------------------ action table
#
# The attribute table is PS3.15 Table E.1-1 as dicom-anonymizer ships it, one module per
# edition of the standard.  The edition is pinned: a newer table changes what is kept in
# every file stored from then on, so taking one is a reviewed change (a test fails when
# the installed package ships an edition newer than this one).
PS315_EDITION = "2026c"

# CurateCT's actions; each attribute of the table gets exactly one.
REMOVE = "X"  # the attribute goes
EMPTY = "Z"  # present with an empty value (type 2 in the CT image IOD)
PSEUDONYM = "P"  # the patient's keyed pseudonym (pseudonym_for)
CLEAN = "C"  # kept unless it contains the patient's name or an ID (_identifying_tokens)
AGE = "A"  # kept, ages over 89 capped
KEEP = "K"  # kept as it is
SHIFT = "S"  # every date in it moved by the patient's offset (date_offset_for)
REMAP = "U"  # every UID in it remapped under the institution's key (uid_key_for)
WALK = "W"  # a sequence kept; its items go through the same rules
ACTIONS = frozenset({REMOVE, EMPTY, PSEUDONYM, CLEAN, AGE, KEEP, SHIFT, REMAP, WALK})

# The standard's letters: X remove, Z empty, D dummy value, U new UID, U* (a sequence)
# new UIDs inside, K keep.  A category of the table is named by its letters, e.g.
# X_Z_U_STAR_TAGS.  A letter outside these (C "clean" has no rule here) fails the import.
_STANDARD_LETTERS = frozenset({"X", "Z", "D", "U", "U*", "K"})

# Curves (50xx) and overlays (60xx) are removed whole by the walk, not element by element.
_REMOVED_REPEATING_GROUPS = (0x5000, 0x6000)

TableEntry = tuple[int, ...]  # (group, element), or (group, element, group mask, element mask)


class ProfileError(RuntimeError):
    """The attribute table holds something CurateCT's policy has no rule for."""


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    # Fail at import on a typo: a silently missing row would leak that attribute.
    if tag is None:
        raise ProfileError(f"unknown DICOM keyword in pseudonymisation policy: {keyword}")
    return tag


# --- CurateCT's own decisions, on top of the table (and beyond it) ---
#
# Retain Patient Characteristics (113108): coarse, and needed to read and model chest
# CT (dose, lung volume norms).  The table says Z (sex) and X (size, weight).
_RETAINED = ("PatientSex", "PatientSize", "PatientWeight")

# The table says X/Z/D, but the annotators need them to tell series apart ("LUNG 1.25 mm",
# contrast phase).  Free text, so each is dropped if it contains the patient's name or an
# ID; other free-text PHI in them is a residual risk accepted by the data owners.
_CLEAN = ("StudyDescription", "SeriesDescription", "ProtocolName", "ContrastBolusAgent")

# Type 2 in the CT image IOD: must be present, so they are emptied rather than removed.
# PatientBirthDate is emptied, not shifted: with the age kept it adds nothing clinically.
_EMPTY = ("PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyID")

_PSEUDONYM = ("PatientName", "PatientID")

# Under the modified-dates option (113107) the table's dates and times are modified, not
# removed; CurateCT shifts every other date (times stay: the shift is whole days).  These
# stamp events around the scan (visit, scheduling, procedure steps, study management,
# device service, curves and overlays), which no reader of the images needs: removed, as
# the basic profile says.
_REMOVED_DATES_AND_TIMES = (
    "PatientBirthTime",
    "LastMenstrualDate",
    "AdmittingDate",
    "AdmittingTime",
    "DischargeDate",
    "DischargeTime",
    "ScheduledAdmissionDate",
    "ScheduledAdmissionTime",
    "ScheduledDischargeDate",
    "ScheduledDischargeTime",
    "DateOfInstallation",
    "DateOfManufacture",
    "DateOfLastCalibration",
    "TimeOfLastCalibration",
    "DateTimeOfLastCalibration",
    "DateOfLastDetectorCalibration",
    "TimeOfLastDetectorCalibration",
    "IssueDateOfImagingServiceRequest",
    "IssueTimeOfImagingServiceRequest",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledStudyStartDate",
    "ScheduledStudyStartTime",
    "ScheduledStudyStopDate",
    "ScheduledStudyStopTime",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "StudyArrivalDate",
    "StudyArrivalTime",
    "StudyCompletionDate",
    "StudyCompletionTime",
    "StudyVerifiedDate",
    "StudyVerifiedTime",
    "StudyReadDate",
    "StudyReadTime",
    "InstanceCoercionDateTime",
    "DateOfSecondaryCapture",
    "TimeOfSecondaryCapture",
    "CurveDate",
    "CurveTime",
    "OverlayDate",
    "OverlayTime",
)

# Not in the table, removed all the same: identifiers of the patient's issuer and the
# accession's, birth/death dates in another calendar, and MAC parameters (the MACs they
# describe no longer match once values change).
_REMOVED_BEYOND_TABLE = (
    "IssuerOfPatientIDQualifiersSequence",
    "IssuerOfAccessionNumberSequence",
    "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar",
    "MACParametersSequence",
)

# UI attributes whose value names a kind of thing (a class, syntax or coding scheme),
# not an instance: remapping them would break the file.  Their values are usually
# under 1.2.840.10008 anyway, but vendor SOP classes are not.
_KEEP_UID_TAGS = frozenset(
    _tag(k)
    for k in (
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ReferencedSOPClassUIDInFile",
        "ReferencedTransferSyntaxUIDInFile",
        "ReferencedRelatedGeneralSOPClassUIDInFile",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "CodingSchemeUID",
        "MappingResourceUID",
        "ContextUID",
    )
)


def _curatect_actions() -> dict[int, str]:
    actions: dict[int, str] = {}
    for action, keywords in (
        (KEEP, _RETAINED),
        (CLEAN, _CLEAN),
        (EMPTY, _EMPTY),
        (PSEUDONYM, _PSEUDONYM),
        (REMOVE, _REMOVED_DATES_AND_TIMES),
        (REMOVE, _REMOVED_BEYOND_TABLE),
        (AGE, ("PatientAge",)),
    ):
        for keyword in keywords:
            tag = _tag(keyword)
            if action in (KEEP, CLEAN, AGE) and dictionary_VR(tag) in ("SQ", "UI"):
                # Kept as is, a sequence would skip the walk, a UID the remapping.
                raise ProfileError(f"{keyword} is a {dictionary_VR(tag)}: it cannot be kept as is")
            actions[tag] = action
    return actions


_CURATECT_ACTIONS = _curatect_actions()


def _format_entry(entry: TableEntry) -> str:
    return "(" + ",".join(f"{part:04X}" for part in entry) + ")"


def _letters(category: str) -> frozenset[str]:
    """Standard letters of a table category: "X_Z_U_STAR_TAGS" -> {"X", "Z", "U*"}."""
    if not category.endswith("_TAGS"):
        raise ProfileError(f"unexpected category in the PS3.15 table: {category}")
    letters: list[str] = []
    for part in category.removesuffix("_TAGS").split("_"):
        if part == "STAR" and letters:
            letters[-1] += "*"
        else:
            letters.append(part)
    unknown = set(letters) - _STANDARD_LETTERS
    if unknown or not letters or ("K" in letters and len(letters) > 1):
        raise ProfileError(f"no CurateCT rule for the PS3.15 action {category.removesuffix('_TAGS')}")
    return frozenset(letters)


def _action_by_vr(tag: int, vr: str, letters: frozenset[str]) -> str:
    """CurateCT's action for a public attribute the table gives ``letters``."""
    if vr in ("DA", "DT"):
        return SHIFT  # option 113107, whatever the basic profile's letter
    if vr == "TM":
        return KEEP  # a whole-day shift leaves the time of day as it was
    if vr == "UI" and letters & {"U", "U*", "D", "K"}:
        if tag in _KEEP_UID_TAGS:
            raise ProfileError(
                f"{_format_entry((tag >> 16, tag & 0xFFFF))} names a kind, not an instance: not remapped"
            )
        # A dummy UID must still join the references to it: the keyed remap is one.
        # Kept UIDs are remapped too, so one institution's UIDs never name another's data.
        return REMAP
    if vr == "SQ" and letters & {"U*", "K"}:
        return WALK
    if "K" in letters:
        return KEEP
    if letters & {"U", "U*"} and not letters & {"X", "Z", "D"}:
        raise ProfileError(f"{_format_entry((tag >> 16, tag & 0xFFFF))}: U on a {vr}, not a UID")
    # X, Z, D: CurateCT writes no dummy values (a dummy reads as real to the next system)
    # and stores CT images only, so an attribute whose value goes is removed, except the
    # few the CT image IOD needs present, which _EMPTY lists.
    return REMOVE


def _action_for(entry: TableEntry, letters: frozenset[str]) -> str:
    if len(entry) == 4:
        group, _element, group_mask, _element_mask = entry
        # (50xx,eeee) curves, (60xx,3000) overlay data, (60xx,4000) overlay comments.
        if letters == {"X"} and group_mask == 0xFF00 and (group & 0xFF00) in _REMOVED_REPEATING_GROUPS:
            return REMOVE
        raise ProfileError(f"no CurateCT rule for the masked entry {_format_entry(entry)}")
    if len(entry) != 2:
        raise ProfileError(f"malformed entry in the PS3.15 table: {entry!r}")
    group, element = entry
    tag = group << 16 | element
    override = _CURATECT_ACTIONS.get(tag)
    if override is not None:
        return override
    if group & 1 or group == 0:
        # Private elements and command elements (e.g. Requested SOP Instance UID, U in
        # the table): the walk removes every one, whatever the table says.
        return REMOVE
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        # Newer than pydicom's dictionary: removal needs no VR; anything else would.
        if "X" in letters:
            return REMOVE
        raise ProfileError(
            f"{_format_entry(entry)} is not in pydicom's dictionary: no rule for its VR"
        ) from None
    return _action_by_vr(tag, vr, letters)


def profile_from_table(categories: Mapping[str, Iterable[TableEntry]]) -> dict[TableEntry, str]:
    """CurateCT's action for every entry of a PS3.15 table given as its categories
    (``{"X_TAGS": [(0x0010, 0x1000), ...], ...}``).  Raises :class:`ProfileError` on
    anything the policy has no rule for, or an entry given two actions by the table.
    """
    profile: dict[TableEntry, str] = {}
    for category, entries in categories.items():
        letters = _letters(category)
        for raw in entries:
            entry = tuple(raw)
            if entry in profile:
                raise ProfileError(f"{_format_entry(entry)} is in two categories of the table")
            profile[entry] = _action_for(entry, letters)
    return profile


def table_for_edition(edition: str) -> dict[str, list[TableEntry]]:
    """The categories of dicom-anonymizer's table of one PS3.15 edition (e.g. "2026c")."""
    module = importlib.import_module(f"dicomanonymizer.dicom_anonymization_databases.dicomfields_{edition}")
    # Every *_TAGS list, not the selector's fixed list of names: a category added by a
    # later release must fail in _letters, not be skipped.
    categories = {
        name: [tuple(entry) for entry in value]
        for name, value in vars(module).items()
        if name.endswith("_TAGS") and name != "ALL_TAGS"
    }
    listed = sorted(tuple(entry) for entry in getattr(module, "ALL_TAGS", []))
    if listed != sorted(entry for entries in categories.values() for entry in entries):
        raise ProfileError(f"PS3.15 table {edition}: ALL_TAGS and its categories disagree")
    return categories


# Built at import: a table the policy cannot handle stops the platform from starting,
# rather than letting an attribute through.
PROFILE = profile_from_table(table_for_edition(PS315_EDITION))


def _walk_actions() -> dict[int, str]:
    actions = {
        entry[0] << 16 | entry[1]: action
        for entry, action in PROFILE.items()
        # Masked entries and private/command elements are the walk's group rules.
        if len(entry) == 2 and not (entry[0] & 1 or entry[0] == 0)
    }
    actions.update(_CURATECT_ACTIONS)
    return actions


_ACTIONS = _walk_actions()

# VRs the walk must look at; everything else is skipped without decoding its value.
_WALKED_VRS = frozenset({"SQ", "PN", "DA", "DT", "UI"})

# Only these file meta elements survive: the rest name sending/receiving systems.
_FILE_META_KEEP = frozenset(
    _tag(k)
    for k in (
        "FileMetaInformationGroupLength",
        "FileMetaInformationVersion",
        "MediaStorageSOPClassUID",
        "MediaStorageSOPInstanceUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
    )
)

# Values written by the walk are generated in valid form (shifted dates, "2.25." UIDs,
# empty strings, the pseudonym), so pydicom's per-value validation is skipped: it
# would double the cost of writing them.
_NO_VALIDATION = config.IGNORE

_PATIENT_NAME = _tag("PatientName")
_PATIENT_ID = _tag("PatientID")
_SOP_INSTANCE_UID = _tag("SOPInstanceUID")
_MEDIA_SOP_INSTANCE_UID = _tag("MediaStorageSOPInstanceUID")
_IMPLEMENTATION_CLASS_UID = _tag("ImplementationClassUID")

# ------------------------------------------------------------------------------ dates

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")  # also ACR-NEMA "YYYY.MM.DD"
# YYYY[MM[DD[HHMMSS.FFFFFF]]][&ZZXX]: the time and offset part is kept verbatim.
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?((?:\d{2}){1,3}(?:\.\d{1,6})?)?([+-]\d{4})?$")


def _shift_da(value: str, days: int) -> str | None:
    """Shifted DA string; "" stays ""; None if the value cannot be parsed."""
    value = value.strip()
    if not value:
        return ""
    match = _DA_RE.match(value)
    if not match:
        return None
    try:
        day = dt.date(int(match[1]), int(match[2]), int(match[3])) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _shift_dt(value: str, days: int) -> str | None:
    """Shifted DT string, same precision; "" stays ""; None if unparseable.

    A DT given to the year or month only is shifted from the first day of that period
    and written back at the same precision: it stays valid and no more precise.
    """
    value = value.strip()
    if not value:
        return ""
    match = _DT_RE.match(value)
    if not match:
        return None
    year, month, day_of_month, time_part, offset = match.groups()
    if time_part and not day_of_month:
        return None
    try:
        day = dt.date(int(year), int(month or 1), int(day_of_month or 1)) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    out = f"{day.year:04d}"
    if month:
        out += f"{day.month:02d}"
    if day_of_month:
        out += f"{day.day:02d}"
    return out + (time_part or "") + (offset or "")


def _as_text(value: object) -> str:
    # With pydicom's datetime conversion switched on, values are DA/DT objects that
    # remember the string they came from.
    if isinstance(value, str):
        return value
    return str(getattr(value, "original_string", None) or value)


# ------------------------------------------------------------------------------- walk


_TOKEN_SOURCE_TAGS = tuple(
    _tag(k)
    for k in (
        "PatientName",
        "PatientID",
        "OtherPatientNames",
        "OtherPatientIDs",
        "PatientBirthName",
        "AccessionNumber",
    )
)
_TOKEN_SPLIT_RE = re.compile(r"[\^=\s,]+")
_AGE_RE = re.compile(r"(\d{3})Y")


class _Context:
    __slots__ = ("days", "key", "pseudonym", "tokens")

    def __init__(self, patient: PatientKey, key: bytes, tokens: frozenset[str]) -> None:
        self.pseudonym = patient.pseudonym
        self.days = patient.date_offset_days
        self.key = key
        self.tokens = tokens


def _known_vr(ds: Dataset, tag: int) -> str | None:
    """VR of an element without decoding its value; None for unknown public tags."""
    raw = ds.get_item(tag)
    vr = raw.VR if raw is not None else None
    if vr is None or vr == "UN":
        # Implicit VR files carry no VR, and some writers store public tags as UN:
        # the dictionary tells what the value really is.
        try:
            return dictionary_VR(tag)
        except KeyError:
            return None
    return vr


def _identifying_tokens(ds: Dataset) -> frozenset[str]:
    """Upper-case name parts and IDs of the patient, to screen kept free text."""
    tokens: set[str] = set()
    for tag in _TOKEN_SOURCE_TAGS:
        if ds.get_item(tag) is None:
            continue
        try:
            value = ds[tag].value
        except Exception:  # a value pydicom cannot decode is removed by the walk anyway
            continue
        values = value if isinstance(value, MultiValue | list | tuple) else [value]
        for v in values:
            for part in _TOKEN_SPLIT_RE.split(str(v).upper()):
                # Very short parts ("CT", initials) would match ordinary descriptions.
                if len(part) >= 3:
                    tokens.add(part)
    return frozenset(tokens)


def _cap_age(value: str) -> str:
    # HIPAA safe harbour: ages over 89 are rare enough to identify; report them as 90.
    match = _AGE_RE.fullmatch(value.strip())
    if match and int(match[1]) > 89:
        return "090Y"
    return value


def _apply_action(ds: Dataset, tag: int, action: str, ctx: _Context) -> None:
    # Ordered by how often each comes up in a CT slice header.
    if action == KEEP:
        return
    if action == SHIFT:
        vr = _known_vr(ds, tag)
        if vr == "DA" or vr == "DT":
            _shift_dates(ds, tag, vr, ctx.days)
        else:
            del ds[tag]  # a date written under another VR cannot be shifted safely
    elif action == REMAP:
        _remap_uids(ds, tag, ctx.key)
    elif action == REMOVE:
        del ds[tag]
    elif action == EMPTY:
        _replace(ds, tag, "")
    elif action == PSEUDONYM:
        _replace(ds, tag, ctx.pseudonym)
    elif action == WALK:
        for item in ds[tag].value:
            _walk(item, ctx)
    elif action == CLEAN:
        text = str(ds[tag].value or "").upper()
        if any(token in text for token in ctx.tokens):
            del ds[tag]
    elif action == AGE:
        value = ds[tag].value
        if isinstance(value, str):
            capped = _cap_age(value)
            if capped != value:
                _replace(ds, tag, capped)


def _replace(ds: Dataset, tag: int, value: str) -> None:
    # A new element, rather than setting .value, so the old value is never decoded
    # (faster, and immune to values pydicom cannot decode); VR from the dictionary.
    ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=_NO_VALIDATION)


def _ascii_values(ds: Dataset, tag: int) -> list[str]:
    """Values of a DA, DT or UI element ([] if empty), decoding raw bytes directly.

    These VRs are restricted to ASCII, so no character set handling is needed and
    pydicom's full conversion (the bulk of the per-slice cost) can be skipped.
    """
    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement) and elem.value is not None:
        text = elem.value.decode("latin-1").strip("\x00 ")
        return text.split("\\") if text else []
    value = ds[tag].value  # already decoded, or deferred and still to be read
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [_as_text(v) for v in value]
    return [_as_text(value)]


def _set_values(ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
    ds[tag] = DataElement(tag, vr, values if len(values) > 1 else values[0], validation_mode=_NO_VALIDATION)


def _shift_dates(ds: Dataset, tag: int, vr: str, days: int) -> None:
    values = _ascii_values(ds, tag)
    if not values:
        return
    shift = _shift_da if vr == "DA" else _shift_dt
    shifted: list[str] = []
    for value in values:
        new = shift(value, days)
        if new is None:
            # An unreadable date could be anything, including a real one: drop it.
            del ds[tag]
            return
        shifted.append(new)
    _set_values(ds, tag, vr, shifted)


def _remap_uids(ds: Dataset, tag: int, key: bytes) -> None:
    values = _ascii_values(ds, tag)
    remapped = [_remap_one(v, key) for v in values]
    if remapped != values:
        _set_values(ds, tag, "UI", remapped)


def _walk(ds: Dataset, ctx: _Context) -> None:
    """One pass over a dataset and, recursively, its sequence items."""
    for tag in list(ds.keys()):
        group = tag >> 16
        if (
            group & 1  # private (odd group): unknown content, may hold anything
            or (tag & 0xFFFF) == 0  # group lengths: wrong after editing
            or group == 0  # command group elements do not belong in stored files
            or (group & 0xFF00) in _REMOVED_REPEATING_GROUPS  # curves, overlays: may carry text
        ):
            del ds[tag]
            continue
        action = _ACTIONS.get(tag)
        if action is not None:
            _apply_action(ds, tag, action, ctx)
            continue
        vr = _known_vr(ds, tag)
        if vr is None:
            # A public tag no dictionary knows: we cannot tell whether it is safe.
            del ds[tag]
        elif vr == "SQ":
            for item in ds[tag].value:
                _walk(item, ctx)
        elif vr == "PN":
            # Safety net beyond the table: no person's name survives anywhere.  Emptied
            # rather than removed, so type 2 attributes of sequence items stay valid.
            _set_values(ds, tag, "PN", [""])
        elif vr == "DA" or vr == "DT":
            _shift_dates(ds, tag, vr, ctx.days)
        elif vr == "UI" and tag not in _KEEP_UID_TAGS:
            _remap_uids(ds, tag, ctx.key)


def _remap_one(uid: str, key: bytes) -> str:
    uid = str(uid)
    if not uid or uid.startswith(_DICOM_UID_ROOT):
        return uid
    return remap_uid(uid, key)


def _clean_file_meta(ds: Dataset, key: bytes) -> None:
    meta: FileMetaDataset | None = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in list(meta.keys()):
        if tag not in _FILE_META_KEEP:
            del meta[tag]
    if ds.get_item(_SOP_INSTANCE_UID) is not None:
        # PS3.10: the file's instance UID is the dataset's, which has just changed.
        meta[_MEDIA_SOP_INSTANCE_UID] = DataElement(
            _MEDIA_SOP_INSTANCE_UID, "UI", ds[_SOP_INSTANCE_UID].value
        )
    elif meta.get_item(_MEDIA_SOP_INSTANCE_UID) is not None:
        _remap_uids(meta, _MEDIA_SOP_INSTANCE_UID, key)
    if meta.get_item(_IMPLEMENTATION_CLASS_UID) is not None:
        # The file will be written by us (pydicom), not by the original device.
        meta[_IMPLEMENTATION_CLASS_UID].value = PYDICOM_IMPLEMENTATION_UID


def _code_sequence() -> Sequence:
    items = []
    for value, meaning in DEIDENTIFICATION_METHOD_CODES:
        item = Dataset()
        item.add_new(0x00080100, "SH", value)  # Code Value
        item.add_new(0x00080102, "SH", "DCM")  # Coding Scheme Designator
        item.add_new(0x00080104, "LO", meaning)  # Code Meaning
        items.append(item)
    return Sequence(items)


def pseudonymise(ds: Dataset, patient: PatientKey, key: bytes) -> None:
    """Pseudonymise a CT dataset in place (see the module docstring for the profile).

    Pixel data and everything needed to show and measure the image (geometry, rescale,
    window, acquisition parameters, manufacturer and model) are kept untouched.
    """
    _require_key(key)
    ctx = _Context(patient, key, _identifying_tokens(ds))
    _walk(ds, ctx)
    # Also when the source had none (type 2 in CT): every stored file names its patient
    # by the pseudonym, so grouping by patient works on pseudonymised data alone.
    _replace(ds, _PATIENT_NAME, patient.pseudonym)
    _replace(ds, _PATIENT_ID, patient.pseudonym)
    _clean_file_meta(ds, key)

    # Markers of PS3.15 E.1: receivers can tell the data is de-identified and how.
    # (Tags rather than keywords: this runs once per slice and keyword lookup is slow.)
    ds.add_new(0x00120062, "CS", "YES")  # Patient Identity Removed
    ds.add_new(0x00120063, "LO", DEIDENTIFICATION_METHOD)  # De-identification Method
    ds.add_new(0x00120064, "SQ", _code_sequence())  # De-identification Method Code Sequence
    ds.add_new(0x00280303, "CS", "MODIFIED")  # Longitudinal Temporal Information Modified
