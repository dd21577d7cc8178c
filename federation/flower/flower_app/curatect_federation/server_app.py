"""The coordinator's ServerApp (CurateCT's federation.flower.server)."""

from federation.flower import server

app = server.app
