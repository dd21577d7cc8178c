"""DICOM ingest: collect files, read and check them, group into series, store atomically."""
