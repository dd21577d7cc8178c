"""Model-assist models (filled in by the pre-segmentation issue)."""
