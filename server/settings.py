"""Django settings, driven by the environment with working defaults for a fresh checkout.

Defaults: SQLite and secrets under ``NAMING_DATA_DIR`` (``./data``), auth on, no Redis.
Every ``NAMING_*`` variable is read once, into the typed ``NAMING`` object
(:class:`server.config.NamingSettings`); an unknown variable or a bad value stops the process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lib.files import read_or_create_secret
from lib.keys import session_key
from server.config import NamingSettings, django_flag, from_environ

BASE_DIR = Path(__file__).resolve().parent.parent
# The node's own settings: one typed object, validated once (server/config.py). Read typed
# attributes (``settings.NAMING.sweep_interval_s``), never environment variables.
NAMING: NamingSettings = from_environ()
DATA_DIR = NAMING.data_dir

# Signs the console's cookie sessions and CSRF tokens. With a cluster secret it is derived from
# it, so a session opened on one member is valid on every member; a standalone node without a
# secret keeps one generated in its data dir.
SECRET_KEY = (
    os.environ.get("DJANGO_SECRET_KEY")
    or (session_key(NAMING.cluster_secret) if NAMING.cluster_secret else None)
    or read_or_create_secret(DATA_DIR / "django.key")
)
DEBUG = django_flag("DJANGO_DEBUG")
ALLOWED_HOSTS = ["*"]  # clients address nodes by IP; the API authenticates every call

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "accounts",
    "node",
    "django_htmx",
    "csp",
    "facades.console",
]

# No middleware at all: every layer costs on the hot endpoints (measured in issue #2's note).
# The API authenticates with tokens, never cookies; the console applies sessions, CSRF, CSP and
# no-store per view (``facades.console.web.console_view``), so ``/nacos/v1/*`` pays nothing.
MIDDLEWARE: list[str] = []

# The console (facades/console): signed-cookie sessions holding the user's access token (no
# table; the token is re-validated on every request, so a logout or a password change ends the
# session on every member), CSRF tokens kept in the session, a CSP without inline code.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_NAME = "nacos_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_PATH = "/nacos/"
SESSION_COOKIE_AGE = NAMING.token_ttl_s
CSRF_USE_SESSIONS = True
CSRF_FAILURE_VIEW = "facades.console.web.csrf_failure"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "server.urls"
WSGI_APPLICATION = "server.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

# Django's per-connection options hold values of several types (mypy would infer Collection[str]).
DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(NAMING.database_path),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
# Served by the console itself (facades.console.views.static): no web server in front.
STATIC_URL = "/nacos/console/static/"

# Bodies are small (query-string clients); a large one is refused before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "facades.nacos_v1.api.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

CELERY_BROKER_URL = NAMING.redis_url or "memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
# A task running when the broker connection drops is redelivered (its ack would be lost anyway).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A task taken by a worker that dies is redelivered after this long (acks_late).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 60,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
    "max_retries": 1,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": NAMING.log_level},
    "loggers": {
        "pysyncobj": {"level": "WARNING"},
        # 4xx answers are the API working as specified, and 503s while starting are expected;
        # real 500s are logged with their traceback by facades.nacos_v1.api.
        "django.request": {"level": "CRITICAL"},
    },
}
