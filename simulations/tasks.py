"""Celery tasks for scale-out (``celery -A yeeter worker``): one task per patient (:mod:`simulations.distributed`)."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready


@worker_ready.connect
def housekeep_on_start(**kwargs) -> None:
    """A worker starting is a Yeeter process starting: abandon runs whose process is gone."""
    from simulations.housekeeping import runs_housekeep

    runs_housekeep()


@shared_task(name="simulations.run_patient", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None, ignore_result=True)
def run_patient(self, run_id: str, index: int) -> str:
    """One patient story of a run. Idempotent: a task delivered twice (a worker lost, the broker's visibility
    timeout) finds its patient taken or ended and does nothing, or redoes the plan of a silent worker."""
    from simulations.distributed import Claim, patient_task

    outcome, delay = patient_task(run_id, index)
    if outcome == Claim.WAIT:
        raise self.retry(countdown=max(delay, 0.05))
    return outcome
