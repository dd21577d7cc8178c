"""A site's ClientApp (CurateCT's federation.flower.client)."""

from federation.flower.client import app  # noqa: F401
