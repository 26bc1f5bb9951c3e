"""Celery application for scale-out runs (``celery -A yeeter worker``); unused without CELERY_BROKER_URL."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yeeter.settings")

app = Celery("yeeter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
