from __future__ import annotations

import logging

from django.apps import AppConfig
from django.core.signals import request_started

logger = logging.getLogger(__name__)


def _housekeep_once(**kwargs) -> None:
    """The web server's start-up housekeeping, on its first request.

    ``ready()`` may not touch the database (it also runs for ``migrate``, ``check`` and every
    management command), and ASGI/WSGI servers have no start-up hook Django offers; the first request
    is the first moment this process is known to serve. It disconnects itself before running, so it
    runs once per process whatever happens.
    """
    request_started.disconnect(_housekeep_once, dispatch_uid="simulations.housekeep")
    from simulations.housekeeping import runs_housekeep

    try:
        runs_housekeep()
    except Exception:  # noqa: BLE001 - housekeeping must never fail the request that triggered it
        logger.exception("start-up housekeeping of runs failed; run `manage.py reap_runs` by hand")


class SimulationsConfig(AppConfig):
    name = "simulations"
    verbose_name = "Simulations"

    def ready(self) -> None:
        request_started.connect(_housekeep_once, dispatch_uid="simulations.housekeep")
        from django.conf import settings

        from generators.dicom import anatomy_cache

        megabytes = settings.YEETER["ANATOMY_CACHE_MB"]
        anatomy_cache.configure(settings.YEETER["ANATOMY_CACHE_DIR"] if megabytes else None, megabytes * 2**20)
