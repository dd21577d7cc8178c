"""A site's SecAgg+ ClientApp (CurateCT's federation.flower.secagg_client)."""

from federation.flower import secagg_client

app = secagg_client.app
