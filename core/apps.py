from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    # The label stays what it was when this app was the platform_core package: the custom user
    # model (AUTH_USER_MODEL = "platform_core.User"), its tables and every migration name it, and
    # moving a swappable user model to another app label is not a safe migration.
    label = "platform_core"
    verbose_name = "CurateCT core"

    def ready(self) -> None:
        from core.jobs import signals  # noqa: F401  (the sweep at worker start)
