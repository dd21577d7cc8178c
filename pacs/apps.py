from django.apps import AppConfig


class PacsConfig(AppConfig):
    name = "pacs"
    verbose_name = "CurateCT PACS (C-STORE listener, remote PACS, pulls, sends)"
