"""Celery tasks for scale-out: a run executes on any worker (``celery -A yeeter worker``)."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready


@worker_ready.connect
def housekeep_on_start(**kwargs) -> None:
    """A worker starting is a Yeeter process starting: abandon runs whose process is gone."""
    from simulations.services import runs_housekeep

    runs_housekeep()


@shared_task(name="simulations.run_simulation", acks_late=True)
def run_simulation(run_id: str) -> str:
    from simulations.models import Run
    from simulations.services import run_execute

    run = Run.objects.filter(pk=run_id, status=Run.Status.PENDING).first()
    if run is None:
        return "skipped: not pending"
    return run_execute(run).status
