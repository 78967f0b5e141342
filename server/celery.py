"""The Celery app: ``celery -A server worker`` runs the Distro sync tasks (``distro.tasks``).

Workers only deliver payloads to peers; they never hold registry state (DESIGN §1).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

app = Celery("server")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["distro"])
