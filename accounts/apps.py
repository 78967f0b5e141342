from django.apps import AppConfig


class NamingConfig(AppConfig):
    """Never start services in ready(): it runs in every process that sets up Django
    (manage.py commands, pytest, celery workers). ``runnode`` starts them."""

    name = "naming"
    default_auto_field = "django.db.models.BigAutoField"
