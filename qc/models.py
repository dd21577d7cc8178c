"""QC models (filled in by the QC issue)."""
