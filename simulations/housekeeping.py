"""Housekeeping of runs: the runs whose process is gone are abandoned (``reap_runs``, at every start of a
Yeeter process), and finished runs past their time are pruned from the database and the disk."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from simulations.events import EventRecorder, EventType
from simulations.models import Run, RunPatient
from simulations.processes import pid_alive

logger = logging.getLogger(__name__)


def _close_run(run_pk, status: str, reason: str, *,
               only: tuple[str, ...] = (Run.Status.PENDING, Run.Status.RUNNING)) -> bool:
    """End a run that did not finish by itself in ``status``: its pending patients are cancelled and
    those in flight failed with ``reason``. False when it had already ended (nothing changed)."""
    now = timezone.now()
    with transaction.atomic():
        ended = Run.objects.filter(pk=run_pk, status__in=only).update(status=status, error=reason, finished_at=now)
        if not ended:
            return False
        RunPatient.objects.filter(run_id=run_pk, status=RunPatient.Status.PENDING).update(
            status=RunPatient.Status.CANCELLED, finished_at=now)
        RunPatient.objects.filter(run_id=run_pk, status=RunPatient.Status.RUNNING).update(
            status=RunPatient.Status.FAILED, error=reason, finished_at=now)
        counts = Counter(RunPatient.objects.filter(run_id=run_pk).values_list("status", flat=True))
        run = Run.objects.get(pk=run_pk)
        run.summary = {**run.summary, "patients": run.patient_count, "passed": counts.get("passed", 0),
                       "failed": counts.get("failed", 0),
                       "cancelled": run.patient_count - counts.get("passed", 0) - counts.get("failed", 0)}
        run.save(update_fields=["summary"])
    return True


def runs_housekeep() -> None:
    """What every Yeeter process does once at start (runsim, serve, a Celery worker, the first web
    request): abandon the runs whose process is gone, and delete runs past the retention
    (``YEETER_RUN_RETENTION_DAYS``, off by default)."""
    for run, reason in runs_reap():
        logger.warning("run %s abandoned: %s", run.pk, reason)
    days = settings.YEETER["RUN_RETENTION_DAYS"]
    if days:
        pruned = runs_prune(older_than=timedelta(days=days))
        if pruned:
            logger.warning("retention (%s days): deleted %s run(s), %.1f MB freed", days, len(pruned),
                           sum(p.bytes for p in pruned) / 1e6)


_UID_NAME = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a UID as a folder name, nothing that could climb out


@dataclass(frozen=True)
class PrunedRun:
    """A finished run deleted (or that would be, in a dry run): its files and the bytes they held."""

    run_id: str
    status: str
    finished_at: dt.datetime | None
    paths: tuple[Path, ...]
    bytes: int
    files: int
    error: str = ""  # a folder that could not be deleted: the run row is kept so a later prune retries


def _size(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    total = count = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += (Path(root) / name).lstat().st_size
                count += 1
            except OSError:
                pass
    return total, count


def _run_paths(run: Run, keep_uids: set[str]) -> list[Path]:
    """The folders a run wrote: its run folder (or, for a folder the user chose with --output, only
    its own patient and study folders in it) and, when the built-in Storage SCP received its studies,
    those received copies — unless another run kept holds the same study (same seed, same UIDs)."""
    data = Path(settings.DATA_DIR).resolve()
    patients = list(run.patients.values_list("index", "accession_number", "study_instance_uid"))
    uids = {uid for _, _, uid in patients if _UID_NAME.match(uid or "")}
    paths: list[Path] = []
    if run.output_dir:
        out = Path(run.output_dir).resolve()
        if out == data / "runs" / str(run.id):
            paths.append(out)
        else:
            paths += [out / "patients" / f"{index:05d}-{accession}" for index, accession, _ in patients if accession]
            paths += [out / uid for uid in sorted(uids)]
    if "storage" in run.options.get("builtin_kinds", []):
        paths += [data / "received" / uid for uid in sorted(uids - keep_uids)]
    return [p for p in paths if p.exists()]


def runs_prune(*, older_than: timedelta, keep_failed: bool = False, dry_run: bool = False) -> list[PrunedRun]:
    """Delete finished runs that ended more than ``older_than`` ago: their rows (patients, events,
    worklist entries) and their files (:func:`_run_paths`). A run still pending or running is never
    touched; ``keep_failed`` keeps runs that failed, errored or were abandoned (the ones worth a look)."""
    cutoff = timezone.now() - older_than
    finished = Run.objects.filter(status__in=Run.FINISHED)
    old = finished.filter(finished_at__lt=cutoff) | finished.filter(finished_at__isnull=True, created_at__lt=cutoff)
    if keep_failed:
        old = old.exclude(status__in=[Run.Status.FAILED, Run.Status.ERROR, Run.Status.ABANDONED])
    doomed = list(old.order_by("created_at"))
    keep_uids = set(RunPatient.objects.exclude(run__in=[r.pk for r in doomed]).values_list("study_instance_uid",
                                                                                           flat=True))
    pruned: list[PrunedRun] = []
    for run in doomed:
        paths = _run_paths(run, keep_uids)
        sizes = [_size(p) for p in paths]
        error = ""
        if not dry_run:
            for path in paths:
                try:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                except OSError as exc:
                    error = f"{path}: {exc.strerror or exc}"
                    break
            if not error:
                out = Path(run.output_dir) if run.output_dir else None
                for folder in (out / "patients", out) if out else ():
                    try:
                        folder.rmdir()  # only when nothing else lives there
                    except OSError:
                        pass
                run.delete()
        pruned.append(PrunedRun(str(run.pk), run.status, run.finished_at, tuple(paths),
                                sum(b for b, _ in sizes), sum(c for _, c in sizes), error))
    return pruned


def run_owner_gone(run: Run, *, stale_after: float | None = None) -> str | None:
    """Why the process executing a running run (or holding a pending one) is gone, or None while it lives.

    Gone: its ``host:pid`` is on this host and that pid is not alive, or — running runs of another host
    only (this host can ask the process itself) — its heartbeat (``Run.heartbeat_at``, written every
    ``YEETER_HEARTBEAT_SECONDS``) is older than ``stale_after`` seconds (default ``YEETER_RUN_STALE_SECONDS``).
    """
    stale = float(settings.YEETER["RUN_STALE_SECONDS"] if stale_after is None else stale_after)
    host, _, pid = run.worker.rpartition(":")
    if host and host == socket.gethostname() and pid.isdigit():
        if int(pid) != os.getpid() and not pid_alive(int(pid)):
            return f"its process {run.worker} is no longer running"
        return None  # alive here, whatever its heartbeat (another process's settings may beat slower)
    if run.status != Run.Status.RUNNING:
        return None  # a pending run has no heartbeat yet: only a dead owner process ends it
    beat = run.heartbeat_at or run.started_at or run.created_at
    silent = (timezone.now() - beat).total_seconds() if beat else float("inf")
    if silent > stale:
        return (f"no heartbeat from {run.worker or 'its process'} for {silent:.0f} s "
                f"(the limit is {stale:.0f} s, YEETER_RUN_STALE_SECONDS)")
    return None


def run_abandon(*, run: Run, reason: str) -> bool:
    """Mark a run whose process is gone ``abandoned``; False when it had ended meanwhile."""
    if not _close_run(run.pk, Run.Status.ABANDONED, f"abandoned: {reason}",
                      only=(Run.Status.PENDING, Run.Status.RUNNING)):
        return False
    async_to_sync(EventRecorder(run.pk).emit)(
        EventType.RUN_ABANDONED, f"Run abandoned: {reason}. Patients in flight failed, the others were cancelled.",
        level="error", payload={"reason": reason, "worker": run.worker})
    run.refresh_from_db()
    return True


def runs_reap(*, stale_after: float | None = None) -> list[tuple[Run, str]]:
    """Abandon every running run whose process is gone, and every pending run whose dispatching process
    died before it started; returns each with the reason."""
    reaped = []
    held = Run.objects.filter(status=Run.Status.PENDING).exclude(worker="")
    for run in (Run.objects.filter(status=Run.Status.RUNNING) | held).order_by("created_at"):
        reason = run_owner_gone(run, stale_after=stale_after)
        if reason is not None and run_abandon(run=run, reason=reason):
            reaped.append((run, reason))
    return reaped
