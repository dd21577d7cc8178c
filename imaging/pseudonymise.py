"""Pseudonymisation of CT DICOM datasets on arrival (DICOM PS3.15 Annex E).

Implements the Basic Application Level Confidentiality Profile (Table E.1-1, the rows
that matter for CT image storage) with these options:

* Retain Longitudinal Temporal Information with Modified Dates (113107): every date is
  shifted by one per-patient offset, so intervals between a patient's studies survive
  but calendar dates do not.  Times of day are kept: without the date they identify no
  one, and they order the acquisitions of a study.
* Retain Patient Characteristics (113108): age, sex, size and weight stay, because they
  are coarse and needed to read and model chest CT (dose, lung volume norms).

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
import re
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
    "PatientKey",
    "date_offset_for",
    "pseudonym_for",
    "pseudonymise",
    "remap_uid",
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
# Actions (PS3.15 letters where they exist):
#   X remove, Z replace by an empty value (kept because the attribute is type 2 in CT),
#   P replace by the pseudonym (D, "dummy", with a stable value), C keep unless it
#   contains an identifier of the patient (a minimal "clean"), A age (kept, capped).
# Attributes not listed keep their value, except for the generic rules of the walk:
# private tags removed, PN emptied, DA/DT shifted, UI remapped.

_REMOVE = (
    # Patient identity and demographics
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence",
    "ReferencedPatientAliasSequence",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "CountryOfResidence",
    "RegionOfResidence",
    "EthnicGroup",
    "Occupation",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "PatientReligiousPreference",
    "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence",
    "PatientInsurancePlanCodeSequence",
    "InsurancePlanIdentification",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "PatientComments",
    "AdditionalPatientHistory",
    "MedicalAlerts",
    "Allergies",
    "SmokingStatus",
    "PregnancyStatus",
    "LastMenstrualDate",
    "PatientState",
    "SpecialNeeds",
    "PatientTransportArrangements",
    "PatientInstitutionResidence",
    "CurrentPatientLocation",
    "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar",
    # Visit / admission
    "AdmissionID",
    "IssuerOfAdmissionID",
    "IssuerOfAdmissionIDSequence",
    "AdmittingDate",
    "AdmittingTime",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence",
    "DischargeDate",
    "DischargeTime",
    "DischargeDiagnosisDescription",
    "ScheduledAdmissionDate",
    "ScheduledAdmissionTime",
    "ScheduledDischargeDate",
    "ScheduledDischargeTime",
    "ScheduledPatientInstitutionResidence",
    "ServiceEpisodeID",
    "ServiceEpisodeDescription",
    "IssuerOfServiceEpisodeID",
    "IssuerOfServiceEpisodeIDSequence",
    "VisitComments",
    "ReasonForVisit",
    "ReasonForVisitCodeSequence",
    # People other than the patient
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "RequestingPhysician",
    "RequestingService",
    "ScheduledPerformingPhysicianName",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledHumanPerformersSequence",
    "ActualHumanPerformersSequence",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "NamesOfIntendedRecipientsOfResults",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "PersonName",
    "PersonIdentificationCodeSequence",
    "PersonAddress",
    "PersonTelephoneNumbers",
    "PersonTelecomInformation",
    "ContentCreatorIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingOrganization",
    "AuthorObserverSequence",
    "ParticipantSequence",
    "CustodialOrganizationSequence",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OrderCallbackPhoneNumber",
    "OrderCallbackTelecomInformation",
    # Institution, site and device identity
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence",
    "StationName",
    "StationAETitle",
    "RetrieveAETitle",
    "NetworkID",
    "DeviceSerialNumber",
    "DeviceDescription",
    "LongDeviceDescription",
    "GantryID",
    "GeneratorID",
    "DetectorID",
    "CassetteID",
    "PlateID",
    "UniqueDeviceIdentifier",
    "UDISequence",
    "XRayDetectorID",
    "XRaySourceID",
    "XRayDetectorLabel",
    "DateOfInstallation",
    "DateOfManufacture",
    "DateOfLastCalibration",
    "TimeOfLastCalibration",
    "DateTimeOfLastCalibration",
    "DateOfLastDetectorCalibration",
    "TimeOfLastDetectorCalibration",
    "ModifyingDeviceID",
    "TimezoneOffsetFromUTC",
    "RequestingAE",
    "ReceivingAE",
    "DestinationAE",
    # Order, request and procedure step: free text, local IDs and requester details
    "RequestAttributesSequence",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedureComments",
    "RequestedProcedureLocation",
    "RequestedContrastAgent",
    "ReasonForStudy",
    "ReasonForTheRequestedProcedure",
    "ReasonForRequestedProcedureCodeSequence",
    "ReasonForTheImagingServiceRequest",
    "ImagingServiceRequestComments",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "IssueDateOfImagingServiceRequest",
    "IssueTimeOfImagingServiceRequest",
    "IssuerOfAccessionNumberSequence",
    "StudyIDIssuer",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "ScheduledStudyStartDate",
    "ScheduledStudyStartTime",
    "ScheduledStudyStopDate",
    "ScheduledStudyStopTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedLocation",
    "PerformedStationAETitle",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformedStationGeographicLocationCodeSequence",
    "CommentsOnThePerformedProcedureStep",
    "CommentsOnRadiationDose",
    "PreMedication",
    # Study management
    "StudyComments",
    "StudyArrivalDate",
    "StudyArrivalTime",
    "StudyCompletionDate",
    "StudyCompletionTime",
    "StudyVerifiedDate",
    "StudyVerifiedTime",
    "StudyReadDate",
    "StudyReadTime",
    # Free text that may carry names, dates or burned-in notes
    "ImageComments",
    "FrameComments",
    "AcquisitionComments",
    "DerivationDescription",
    "IdentifyingComments",
    "ImagePresentationComments",
    "AcquisitionDeviceProcessingDescription",
    "AcquisitionProtocolDescription",
    "RespiratoryMotionCompensationTechniqueDescription",
    "TextString",
    "TextComments",
    "Arbitrary",
    "Impressions",
    "ResultsComments",
    "InterpretationText",
    "InterpretationDiagnosisDescription",
    # Clinical trial identifiers (the platform assigns its own)
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "ClinicalTrialTimePointID",
    "ClinicalTrialTimePointDescription",
    "ClinicalTrialCoordinatingCenterName",
    "ClinicalTrialSeriesID",
    "ClinicalTrialSeriesDescription",
    "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
    # Containers of other values, thumbnails, signatures, padding
    "OriginalAttributesSequence",  # holds the values before any earlier modification
    "ModifiedAttributesSequence",
    "NonconformingModifiedAttributesSequence",
    "AcquisitionContextSequence",
    "ContentSequence",
    "GraphicAnnotationSequence",
    "IconImageSequence",
    "DigitalSignaturesSequence",
    "ReferencedDigitalSignatureSequence",
    "ReferencedSOPInstanceMACSequence",
    "MACParametersSequence",
    "EncapsulatedDocument",
    "DataSetTrailingPadding",  # unused bytes that may still hold old data
    "InstanceCoercionDateTime",
    "DateOfSecondaryCapture",
    "TimeOfSecondaryCapture",
    "CurveDate",
    "CurveTime",
    "OverlayDate",
    "OverlayTime",
)

# Type 2 in the CT image IOD: must be present, so they are emptied rather than removed.
# PatientBirthDate is emptied, not shifted: with age kept it adds nothing clinically.
_EMPTY = (
    "PatientBirthDate",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)

_PSEUDONYM = ("PatientName", "PatientID")

# Standard says remove (X) but the annotators need them to tell series apart
# (e.g. "LUNG 1.25 mm", contrast phase).  They are free text, so they are dropped if
# they contain the patient's name or ID (see _identifying_tokens); other free-text
# PHI in them is a residual risk accepted by the data owners.
_CLEAN = (
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ContrastBolusAgent",
)


def _build_actions() -> dict[int, str]:
    actions: dict[int, str] = {}
    for action, keywords in (("X", _REMOVE), ("Z", _EMPTY), ("P", _PSEUDONYM), ("C", _CLEAN)):
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            # Fail at import on a typo: a silently missing row would leak that attribute.
            if tag is None:
                raise RuntimeError(f"unknown DICOM keyword in pseudonymisation table: {keyword}")
            actions[tag] = action
    # Kept under the Retain Patient Characteristics option, but ages over 89 are capped.
    actions[tag_for_keyword("PatientAge")] = "A"  # type: ignore[index]
    return actions


_ACTIONS = _build_actions()

# UI attributes whose value names a kind of thing (a class, syntax or coding scheme),
# not an instance: remapping them would break the file.  Their values are usually
# under 1.2.840.10008 anyway, but vendor SOP classes are not.
_KEEP_UID_TAGS = frozenset(
    tag_for_keyword(k)
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

# VRs the walk must look at; everything else is skipped without decoding its value.
_WALKED_VRS = frozenset({"SQ", "PN", "DA", "DT", "UI"})

# Only these file meta elements survive: the rest name sending/receiving systems.
_FILE_META_KEEP = frozenset(
    tag_for_keyword(k)
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

_PATIENT_NAME = tag_for_keyword("PatientName")
_PATIENT_ID = tag_for_keyword("PatientID")
_SOP_INSTANCE_UID = tag_for_keyword("SOPInstanceUID")
_MEDIA_SOP_INSTANCE_UID = tag_for_keyword("MediaStorageSOPInstanceUID")
_IMPLEMENTATION_CLASS_UID = tag_for_keyword("ImplementationClassUID")

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
    tag_for_keyword(k)
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
    if action == "X":
        del ds[tag]
    elif action == "Z":
        _replace(ds, tag, "")
    elif action == "P":
        _replace(ds, tag, ctx.pseudonym)
    elif action == "C":
        text = str(ds[tag].value or "").upper()
        if any(token in text for token in ctx.tokens):
            del ds[tag]
    elif action == "A":
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
            or (group & 0xFF00) in (0x5000, 0x6000)  # curves and overlays: may carry text
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
