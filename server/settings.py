"""Django settings, driven by the environment with working defaults for a fresh checkout.

Defaults: SQLite and secrets under ``NAMING_DATA_DIR`` (``./data``), auth on, no Redis.
Naming-specific settings live in the ``NAMING`` dict and are validated once by ``naming.conf``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lib.files import read_or_create_secret
from server.env import env_bool, env_float, env_int, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("NAMING_DATA_DIR", "data")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or read_or_create_secret(DATA_DIR / "django.key")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = ["*"]  # clients address nodes by IP; the API authenticates every call

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "rest_framework",
    "accounts",
    "node",
]

# No session/CSRF middleware: the API and the console authenticate with tokens, never cookies,
# and every middleware layer costs on the hot endpoints (measured in issue #2's note).
MIDDLEWARE: list[str] = []

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
        "NAME": env_str("NAMING_DB_PATH", str(DATA_DIR / "naming.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

# Bodies are small (query-string clients); a large one is refused before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "facades.nacos_v1.api.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Values of several types, read by key (mypy: Any) until one validated settings object replaces it.
NAMING: dict[str, Any] = {
    "AUTH_ENABLED": env_bool("NAMING_AUTH_ENABLED", True),
    "TOKEN_TTL_S": env_int("NAMING_TOKEN_TTL_S", 18000, minimum=60),
    "ADMIN_PASSWORD": os.environ.get("NAMING_ADMIN_PASSWORD", ""),
    # Password checks (PBKDF2, ~0.25 s each) run on this many threads with at most QUEUE
    # waiting; more concurrent attempts are refused with a 503 (issue #8).
    "LOGIN_HASH_WORKERS": env_int("NAMING_LOGIN_HASH_WORKERS", 1, minimum=1, maximum=16),
    "LOGIN_HASH_QUEUE": env_int("NAMING_LOGIN_HASH_QUEUE", 3, minimum=0, maximum=256),
    "LOGIN_HASH_NICE": env_int("NAMING_LOGIN_HASH_NICE", 5, minimum=0, maximum=19),
    "LOGIN_MAX_FAILURES": env_int("NAMING_LOGIN_MAX_FAILURES", 5, minimum=1),
    "LOGIN_MAX_ADDRESS_FAILURES": env_int("NAMING_LOGIN_MAX_ADDRESS_FAILURES", 20, minimum=1),
    "LOGIN_FAILURE_WINDOW_S": env_float("NAMING_LOGIN_FAILURE_WINDOW_S", 60.0, minimum=1.0),
    "LOGIN_LOCKOUT_S": env_float("NAMING_LOGIN_LOCKOUT_S", 60.0, minimum=1.0),
    "SERVER_THREADS": env_int("NAMING_SERVER_THREADS", 8, minimum=1, maximum=256),
    # Open HTTP connections held at once (lowered to fit the descriptor limit); past it the
    # longest-idle ones are closed to admit new callers.
    "HTTP_CONNECTION_LIMIT": env_int("NAMING_HTTP_CONNECTION_LIMIT", 10000, minimum=16),
    # The GIL switch interval (ms): waitress's one I/O thread competes with the workers.
    "SWITCH_INTERVAL_MS": env_float("NAMING_SWITCH_INTERVAL_MS", 5.0, minimum=0.1),
    "SWEEP_INTERVAL_S": env_float("NAMING_SWEEP_INTERVAL_S", 5.0, minimum=0.05),
    "CLEAN_ENABLED": env_bool("NAMING_EMPTY_SERVICE_CLEAN", True),
    "CLEAN_INITIAL_S": env_float("NAMING_EMPTY_SERVICE_CLEAN_INITIAL_S", 50.0),
    "CLEAN_PERIOD_S": env_float("NAMING_EMPTY_SERVICE_CLEAN_PERIOD_S", 30.0, minimum=0.05),
    "CHECK_INTERVAL_S": env_float("NAMING_HEALTH_CHECK_INTERVAL_S", 5.0, minimum=0.05),
    "CHECK_NETWORKS": env_str("NAMING_HEALTH_CHECK_NETWORKS", "0.0.0.0/0,::/0"),
    "CLUSTER_SECRET": os.environ.get("NAMING_CLUSTER_SECRET", ""),
    # Sync the Raft journal before acknowledging (off only to measure what durability costs).
    "RAFT_FSYNC": env_bool("NAMING_RAFT_FSYNC", True),
    # Distro sync goes through Celery tasks on this Redis when set; in-process otherwise.
    "REDIS_URL": os.environ.get("NAMING_REDIS_URL", ""),
    "MEMBER_REPORT_INTERVAL_S": env_float("NAMING_MEMBER_REPORT_INTERVAL_S", 2.0, minimum=0.05),
    "DISTRO_VERIFY_INTERVAL_S": env_float("NAMING_DISTRO_VERIFY_INTERVAL_S", 5.0, minimum=0.05),
    "DISTRO_BATCH_WINDOW_MS": env_float("NAMING_DISTRO_BATCH_WINDOW_MS", 5.0, minimum=0.0),
    # Answer an ephemeral write only once the key's next owner holds it (issue #8).
    "DISTRO_SYNC_ACK": env_bool("NAMING_DISTRO_SYNC_ACK", False),
    # Fault injection for tests only: every Distro sync is lost, so only verify replicates.
    "FAULT_DROP_SYNC": env_bool("NAMING_FAULT_DROP_SYNC", False),
}

CELERY_BROKER_URL = NAMING["REDIS_URL"] or "memory://"
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
    "root": {"handlers": ["console"], "level": env_str("NAMING_LOG_LEVEL", "INFO")},
    "loggers": {
        "pysyncobj": {"level": "WARNING"},
        # waitress warns on every queued request under load ("Task queue depth"): noise.
        "waitress.queue": {"level": "ERROR"},
        # 4xx answers are the API working as specified, and 503s while starting are expected;
        # real 500s are logged with their traceback by facades.nacos_v1.api.
        "django.request": {"level": "CRITICAL"},
    },
}
