"""A site's ClientApp (CurateCT's federation.flower.client)."""

from federation.flower import client

app = client.app
