from django.apps import AppConfig


class NodeAppConfig(AppConfig):
    """The composition root, a Django app only so that ``manage.py runnode`` is found.

    Never start services in ready(): ``runnode`` starts them (DESIGN §5)."""

    name = "node"
    label = "node"
