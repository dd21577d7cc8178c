"""The coordinator's ServerApp (CurateCT's federation.flower.server)."""

from federation.flower.server import app  # noqa: F401
