"""Synthetic chest CT phantoms: anatomy, lesions per disease pattern, scanner styles, DICOM.

The parts, one job each: tissues (labels and HU), shapes (grid and primitives), anatomy and trees
(the thorax), blobs and lesions (what disease draws), scanner (labels to HU as a scanner shows
them), generator (make_phantom), dicom and study (writing), cohorts (patterns × institutions).
demo.phantom re-exports the old names.
"""
