from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, tokens and (later) roles and permissions.

    Never start services in ready(): it runs in every process that sets up Django
    (manage.py commands, pytest, celery workers). ``runnode`` starts them."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
