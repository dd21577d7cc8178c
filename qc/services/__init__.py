"""Every write of QC, one function per operation (see the modules for the rules)."""

from qc.services.checks import check_record
from qc.services.reviews import (
    batch_reopen,
    batch_review_transition,
    spot_check_reassign,
    spot_check_record,
    spot_check_replay,
    spot_check_sample,
    spot_check_sample_size,
)
from qc.services.submission import Submission, check_reassign, revision_submit

__all__ = [
    "Submission",
    "batch_reopen",
    "batch_review_transition",
    "check_reassign",
    "check_record",
    "revision_submit",
    "spot_check_reassign",
    "spot_check_record",
    "spot_check_replay",
    "spot_check_sample",
    "spot_check_sample_size",
]
