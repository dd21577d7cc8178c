"""The coordinator's SecAgg+ ServerApp (CurateCT's federation.flower.secagg_server)."""

from federation.flower import secagg_server

app = secagg_server.app
