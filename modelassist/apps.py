from django.apps import AppConfig


class ModelassistConfig(AppConfig):
    name = "modelassist"
