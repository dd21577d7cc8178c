from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "CurateCT demo (phantoms and seed data; never imported at run time)"
