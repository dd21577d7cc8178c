"""Every write of model assist, one module per concern:

- `preseg`: pre-segmentation of a batch's scans as revision 0 (baseline or the active model)
- `model_versions`: registering, uploading, activating and loading model versions
- `splits`: the institution-level train/validation/test split, stable across exports
- `export`, `export_files`, `export_archive`: curated dataset versions on disk (NIfTI, DICOM
  SEG, manifest) and their streamed zip download
- `training`, `evaluation`: retraining on an export, Dice on its test split, promotion
- `quantification`: the per-scan report (lung mask cache, volumes, severity score)
"""
