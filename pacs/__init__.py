"""PACS connectivity: the C-STORE receiver, the DICOMweb server (QIDO-RS, STOW-RS and the
retrieve resources WADO-RS lacked), pulls from and label sends to a hospital's PACS.

Everything that arrives goes through the same ingest service as uploads (pseudonymised,
grouped, checked, stored atomically per series); see `intake`.
"""
