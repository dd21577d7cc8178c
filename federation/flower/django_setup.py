"""Django for the Flower processes: the ServerApp and ClientApp run in processes Flower starts
(flwr-serverapp, flwr-clientapp), with the environment of the CurateCT worker that started
the SuperLink or SuperNode (processes.flower_env)."""

from __future__ import annotations

import os


def ensure_django() -> None:
    from django.apps import apps

    if not apps.ready:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
        django.setup()
