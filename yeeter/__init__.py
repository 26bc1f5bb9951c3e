"""Yeeter: a radiology workflow simulator (project package: settings, URLs, ASGI, Celery)."""

from yeeter.celery import app as celery_app

__all__ = ("celery_app",)
