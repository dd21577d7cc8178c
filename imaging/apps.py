from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "imaging"
    verbose_name = "CurateCT imaging (DICOM ingest, pseudonymisation, DICOMweb)"
