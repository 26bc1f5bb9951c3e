"""Disk: old finished runs are pruned with their files and the built-in receiver's copy; nothing else."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from simulations.models import Run, RunEvent, RunPatient

pytestmark = pytest.mark.django_db(transaction=True)
STEPS = [{"step_type": "GENERATE_HL7", "exam_id": "DX-CHEST-2V"}]


def _real_run(*args: str) -> Run:
    out = io.StringIO()
    try:
        call_command("runsim", "--exam", "DX-CHEST-2V", "--patients", "1", "--max-instances", "1", "--json", *args,
                     stdout=out, stderr=io.StringIO())
    except CommandError:
        pass
    return Run.objects.get(pk=json.loads(out.getvalue())["run_id"])


def _age(run: Run, days: int, **fields) -> None:
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=days), **fields)


def _fake(status: str, days: int, data: Path) -> tuple[Run, Path]:
    run = Run.objects.create(steps=STEPS, patient_count=1, seed=1, status=status)
    folder = data / "runs" / str(run.id)
    folder.mkdir(parents=True)
    (folder / "kept.txt").write_text("x" * 1000)
    Run.objects.filter(pk=run.pk).update(output_dir=str(folder), created_at=timezone.now() - timedelta(days=days),
                                         finished_at=None if status == "running" else
                                         timezone.now() - timedelta(days=days))
    return run, folder


def test_prune_runs_deletes_old_finished_runs_their_folder_and_received_copy_and_nothing_else(catalog_tx, tmp_path,
                                                                                             settings):
    settings.DATA_DIR = tmp_path
    old = _real_run("--seed", "11")
    recent = _real_run("--seed", "12")
    _age(old, 8)
    uid = old.patients.get().study_instance_uid
    received, generated = tmp_path / "received" / uid, Path(old.output_dir)
    assert any(received.glob("*.dcm")) and any(generated.rglob("*.dcm"))
    running, running_dir = _fake("running", 30, tmp_path)
    failed, failed_dir = _fake("failed", 30, tmp_path)

    dry = io.StringIO()
    call_command("prune_runs", "--older-than", "7d", "--keep-failed", "--dry-run", stdout=dry)
    assert f"Would delete run {old.pk} (succeeded" in dry.getvalue()
    assert received.exists() and Run.objects.filter(pk=old.pk).exists()

    out = io.StringIO()
    call_command("prune_runs", "--older-than", "7d", "--keep-failed", stdout=out)
    assert not received.exists() and not generated.exists()
    assert not Run.objects.filter(pk=old.pk).exists() and not RunEvent.objects.filter(run_id=old.pk).exists()
    assert not RunPatient.objects.filter(run_id=old.pk).exists()
    freed = out.getvalue().splitlines()[-1]
    assert freed.startswith("Freed ") and freed.endswith("MB from 1 run(s) older than 7 days, 0:00:00.")
    assert float(freed.split()[1]) > 0
    for kept in (recent, running, failed):
        assert Run.objects.filter(pk=kept.pk).exists()
    assert running_dir.exists() and failed_dir.exists() and Path(recent.output_dir).exists()
    assert (tmp_path / "received" / recent.patients.get().study_instance_uid).exists()

    call_command("prune_runs", "--older-than", "7d", stdout=io.StringIO())  # now without --keep-failed
    assert not Run.objects.filter(pk=failed.pk).exists() and not failed_dir.exists()
    assert Run.objects.filter(pk=running.pk).exists() and running_dir.exists()  # never a running run


def test_a_received_study_another_run_still_holds_is_kept(catalog_tx, tmp_path, settings):
    settings.DATA_DIR = tmp_path
    first = _real_run("--seed", "21")
    second = _real_run("--seed", "21")  # same seed, same Study Instance UID, same received folder
    _age(first, 8)
    call_command("prune_runs", "--older-than", "7d", stdout=io.StringIO())
    assert not Run.objects.filter(pk=first.pk).exists()
    assert (tmp_path / "received" / second.patients.get().study_instance_uid).exists()


def test_the_retention_setting_prunes_at_start_up(catalog_tx, tmp_path, settings):
    from simulations.housekeeping import runs_housekeep

    settings.DATA_DIR = tmp_path
    settings.YEETER = {**settings.YEETER, "RUN_RETENTION_DAYS": 7}
    old, old_dir = _fake("succeeded", 8, tmp_path)
    young, young_dir = _fake("succeeded", 6, tmp_path)
    runs_housekeep()
    assert not Run.objects.filter(pk=old.pk).exists() and not old_dir.exists()
    assert Run.objects.filter(pk=young.pk).exists() and young_dir.exists()


@pytest.mark.parametrize("age", ["seven days", "-1d", "7y", ""])
def test_prune_runs_refuses_an_age_it_cannot_read(db, age):
    with pytest.raises(CommandError) as err:
        call_command("prune_runs", f"--older-than={age}", stdout=io.StringIO())
    assert err.value.returncode == 2 and "--older-than: expected an age such as 7d" in str(err.value)
