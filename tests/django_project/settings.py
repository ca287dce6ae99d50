"""A minimal Django project for tests/test_django.py: one app (inbox) with a realtime.py."""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "realtime_sync.contrib.django",
    "tests.django_project.inbox",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# The URL of a fake Voxsig server; tests override it (override_settings, or this variable for a
# subprocess).  The pubsub token is the fake server's demo token, not a secret.
REALTIME_SYNC = {
    "VENDOR": "voxsig",
    "URL": os.environ.get("REALTIME_SYNC_TEST_URL", "ws://127.0.0.1:9/cable"),
    "TOKEN": os.environ.get("VOXSIG_PUBSUB_TOKEN", "user-token-1"),
    "OPTIONS": {"account_id": 1, "user_id": 7, "presence_interval": None},
}
