"""The DICOM writer: a HU volume (a phantom's or a real NRRD's) as one CT series."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from demo.phantoms.scanner import ScannerStyle


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _birth_date(patient_id: str, study_date: str) -> str:
    """A stable made-up birth date per patient, so serial studies agree (and date shifting can be
    tested against it)."""
    h = int(hashlib.sha256(patient_id.encode()).hexdigest(), 16)
    year = min(1935 + h % 55, int(study_date[:4]) - 18)
    return f"{year:04d}{1 + (h >> 8) % 12:02d}{1 + (h >> 16) % 28:02d}"


def _age(birth: str, on: str) -> str:
    b, d = (
        dt.date.fromisoformat(f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"),
        dt.date.fromisoformat(f"{on[:4]}-{on[4:6]}-{on[6:]}"),
    )
    return f"{d.year - b.year - ((d.month, d.day) < (b.month, b.day)):03d}Y"


def write_ct_series(
    hu: np.ndarray,
    out_dir: Path,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    study_date: str = "20200315",
    accession: str = "",
    institution_name: str = "Synthetic General Hospital",
    series_description: str = "Chest CT phantom",
    extra_phi: bool = False,
    slice_order: Literal["shuffled", "ascending"] = "shuffled",
    patient_birth_date: str | None = None,
    patient_sex: str | None = None,
    series_number: int = 2,
    scanner: ScannerStyle | None = None,
) -> list[Path]:
    """Write `hu` (int16, (z, y, x), slice 0 at the smallest z) as one CT Image Storage file per
    slice; returns the paths in slice order (ascending z).

    Pixels are stored unsigned as HU + 1024 (RescaleIntercept −1024), as most scanners do.
    InstanceNumber counts from 1 at the smallest z. With slice_order "shuffled" file names are
    hashes that say nothing about order, so a reader must sort by ImagePositionPatient; with
    "ascending" they are IM00001.dcm… in z order. `scanner` (the style a cohort phantom was
    rendered in) is recorded as it is: kernel, slice thickness and spacing, model name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    birth = patient_birth_date or _birth_date(patient_id, study_date)
    hi = int(hu.max()) + 1024 if hu.size else 0
    ds = _ct_template(
        hu.shape,
        spacing,
        study_uid=study_uid,
        series_uid=series_uid,
        patient_id=patient_id,
        patient_name=patient_name,
        birth=birth,
        sex=patient_sex or "MF"[int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % 2],
        study_date=study_date,
        accession=accession,
        institution_name=institution_name,
        series_description=series_description,
        series_number=series_number,
        bits_stored=12 if hi <= 4095 else 16,
    )
    if scanner is not None:
        _record_scanner(ds, scanner, float(spacing[2]))
    if extra_phi:
        _add_extra_phi(
            ds,
            patient_id=patient_id,
            patient_name=patient_name,
            birth=birth,
            study_date=study_date,
            accession=accession,
        )
    x0, y0 = _ds(origin[0]), _ds(origin[1])
    paths = []
    for k in range(hu.shape[0]):
        uid = generate_uid(entropy_srcs=[series_uid, str(k)])  # stable per series and slice
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        z = _ds(origin[2] + k * float(spacing[2]))
        ds.ImagePositionPatient = [x0, y0, z]
        ds.SliceLocation = z
        # int32 first: HU above 31743 would wrap in int16; below -1024 cannot be stored unsigned.
        ds.PixelData = np.clip(hu[k].astype(np.int32) + 1024, 0, 65535).astype("<u2").tobytes()
        if slice_order == "shuffled":
            name = hashlib.sha1(uid.encode()).hexdigest()[:20] + ".dcm"
        else:
            name = f"IM{k + 1:05d}.dcm"
        path = out_dir / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _ct_template(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    *,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    patient_name: str,
    birth: str,
    sex: str,
    study_date: str,
    accession: str,
    institution_name: str,
    series_description: str,
    series_number: int,
    bits_stored: int,
) -> FileDataset:
    """Everything that is the same on every slice; built once because deep-copying a dataset
    per slice costs more than writing it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("phantom.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    for prefix in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{prefix}Date", study_date)
        setattr(ds, f"{prefix}Time", "101512")
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.Manufacturer = "CurateCT Synthetic"
    ds.ManufacturerModelName = "Phantom CT 64"
    ds.SoftwareVersions = "1.0"
    ds.InstitutionName = institution_name
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.PatientAge = _age(birth, study_date)
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = _ds(spacing[2])
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = _ds(shape[2] * float(spacing[0]))
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = 200
    ds.Exposure = 100
    ds.ConvolutionKernel = "LUNG"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = accession[-16:] or "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame"])
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[1]), int(shape[2])
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (y) first, then column (x)
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _record_scanner(ds: Dataset, scanner: ScannerStyle, step_mm: float) -> None:
    """The style's protocol in the tags a reader trusts. The field of view is already honest:
    ReconstructionDiameter and PixelSpacing come from the grid the phantom was rendered on."""
    ds.ManufacturerModelName = scanner.name
    ds.ConvolutionKernel = scanner.kernel_name
    ds.SliceThickness = _ds(scanner.slice_thickness_on(step_mm))
    ds.SpacingBetweenSlices = _ds(step_mm)


def _add_extra_phi(
    ds: Dataset, *, patient_id: str, patient_name: str, birth: str, study_date: str, accession: str
) -> None:
    """Identifying data in the places real archives leave it, nested and private included, so
    pseudonymisation can be proven to find it all."""
    surname = patient_name.split("^")[0]
    ds.OtherPatientNames = [f"{surname}^MAIDEN"]
    ds.PatientBirthName = f"{surname}^MAIDEN"
    ds.PatientMotherBirthName = "SMITH^MARY"
    ds.PatientAddress = "12 Synthetic Road, Phantomville"
    ds.PatientTelephoneNumbers = ["+1 555 0100"]
    ds.PatientComments = f"Transferred patient {patient_name}, MRN {patient_id}"
    ds.AdditionalPatientHistory = f"{patient_name} has a cough since {study_date}"
    ds.IssuerOfPatientID = "SGH-MRN"
    ds.MedicalRecordLocator = f"MRN-{patient_id}"
    ds.Occupation = "TEACHER"
    ds.OperatorsName = "TECH^ANNA"
    ds.PerformingPhysicianName = "CUTTER^RADIA"
    ds.NameOfPhysiciansReadingStudy = "HOUSE^GREGORY"
    ds.RequestingPhysician = "KILDARE^JAMES"
    ds.PhysiciansOfRecord = "QUINN^MICHAELA"
    ds.ReferringPhysicianAddress = "1 Clinic Street, Phantomville"
    ds.ReferringPhysicianTelephoneNumbers = ["+1 555 0199"]
    ds.InstitutionAddress = "1 Hospital Way, Phantomville"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.StationName = "CTROOM3"
    ds.DeviceSerialNumber = "SN-4711-0815"
    ds.ImageComments = f"Scanned for {patient_name}"
    ds.AcquisitionDateTime = f"{study_date}101512"
    ds.PerformedProcedureStepID = f"PPS{accession or patient_id}"[:16]
    ds.PerformedProcedureStepStartDate = study_date
    ds.PerformedProcedureStepStartTime = "101000"
    ds.PerformedProcedureStepDescription = f"CT chest {patient_name}"
    others = []
    for pid, issuer in ((f"{patient_id}-OLD", "OLDPACS"), (f"NHS{patient_id}", "NHS")):
        item = Dataset()
        item.PatientID, item.IssuerOfPatientID, item.TypeOfPatientID = pid, issuer, "TEXT"
        others.append(item)
    ds.OtherPatientIDsSequence = Sequence(others)
    request = Dataset()
    request.RequestedProcedureID = accession or "RP1"
    request.RequestedProcedureDescription = f"CT chest for {patient_name}"
    request.ScheduledProcedureStepID = "SPS1"
    request.ScheduledProcedureStepStartDate = study_date
    request.ScheduledPerformingPhysicianName = "CUTTER^RADIA"
    request.AccessionNumber = accession
    request.StudyInstanceUID = ds.StudyInstanceUID
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = f"{ds.InstitutionName} RIS, requested by {patient_name}"
    request.IssuerOfAccessionNumberSequence = Sequence([issuer])
    ds.RequestAttributesSequence = Sequence([request])
    # The standard's own record of earlier values: the name, ID and birth date two levels deep.
    previous = Dataset()
    previous.PatientName = patient_name
    previous.PatientID = patient_id
    previous.PatientBirthDate = birth
    original = Dataset()
    original.ModifiedAttributesSequence = Sequence([previous])
    original.AttributeModificationDateTime = f"{study_date}090000"
    original.ModifyingSystem = "SGH RIS"
    original.SourceOfPreviousValues = str(ds.InstitutionName)
    original.ReasonForTheAttributeModification = "COERCE"
    ds.OriginalAttributesSequence = Sequence([original])
    block = ds.private_block(0x0011, "SYNTHGH PACS 1.0", create=True)
    block.add_new(0x01, "LO", patient_name.replace("^", " "))
    block.add_new(0x02, "LO", patient_id)
    block.add_new(0x03, "DA", birth)
    inner = Dataset()
    inner.add_new(0x00110010, "LO", "SYNTHGH PACS 1.0")
    inner.add_new(0x00111001, "PN", patient_name)
    block.add_new(0x04, "SQ", Sequence([inner]))


def nrrd_to_dicom_series(
    nrrd_path: Path, out_dir: Path, *, patient_id: str, patient_name: str, **options: Any
) -> list[Path]:
    """Write a real CT volume (NRRD, NIfTI… anything SimpleITK reads, in HU) as a DICOM series with
    made-up headers, keeping its origin and spacing; `options` go to write_ct_series."""
    import SimpleITK as sitk  # heavy, and only this helper needs it

    image = sitk.ReadImage(str(nrrd_path))
    if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6):
        raise ValueError(f"{nrrd_path}: only axis-aligned volumes (identity direction) are supported")
    hu = sitk.GetArrayFromImage(image).astype(np.int16)  # (z, y, x); index 0 is the origin slice
    sx, sy, sz = (float(v) for v in image.GetSpacing())
    ox, oy, oz = (float(v) for v in image.GetOrigin())  # ITK uses LPS, as DICOM does
    return write_ct_series(
        hu,
        out_dir,
        spacing=(sx, sy, sz),
        origin=(ox, oy, oz),
        patient_id=patient_id,
        patient_name=patient_name,
        **options,
    )
