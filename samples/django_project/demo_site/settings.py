"""Settings of the sample project: the realtime_sync app and one Voxsig client."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "sample-only-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "realtime_sync.contrib.django",  # the realtime_listen command and the settings check
    "inbox",  # its realtime.py is found automatically
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SAMPLE_DB", os.path.join(tempfile.gettempdir(), "realtime_sync_django.sqlite3")),
    }
}

# One client; several are written {"CLIENTS": {"name": {...}, ...}}.  The defaults point at
# `realtime-sync fake-server voxsig` and its demo token; real values come from the environment.
REALTIME_SYNC = {
    "VENDOR": "voxsig",
    "URL": os.environ.get("REALTIME_SYNC_URL", "ws://127.0.0.1:8765/cable"),
    "TOKEN": os.environ.get("VOXSIG_PUBSUB_TOKEN", "user-token-1"),
    "OPTIONS": {
        "account_id": int(os.environ.get("VOXSIG_ACCOUNT_ID", "1")),
        "user_id": int(os.environ.get("VOXSIG_USER_ID", "7")),
    },
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"realtime_sync": {"handlers": ["console"], "level": "WARNING"}},
}
