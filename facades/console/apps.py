from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The admin console (``/nacos/``): an edge like ``facades.nacos_v1``, rendering HTML."""

    name = "facades.console"
    label = "console"
    default_auto_field = "django.db.models.BigAutoField"
