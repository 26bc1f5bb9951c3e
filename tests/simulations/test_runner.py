"""The runner end to end: real receivers (ours and dcmtk), persisted rows and events, verification."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.models import Run, RunEvent, RunPatient, Scenario
from tests.dcmtk import storescp, wlmscpfs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def scenarios(transactional_db):
    from exams.catalog_io import load_catalog
    from simulations.scenario_io import load_scenarios
    from tests.exams.documents import small_catalog

    load_catalog(small_catalog())
    load_scenarios()


def runsim(*args: str) -> dict:
    out = io.StringIO()
    try:
        call_command("runsim", *args, "--json", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        exc.output = out.getvalue()  # type: ignore[attr-defined]
        raise
    return json.loads(out.getvalue())


def study_files(run: dict, row: RunPatient) -> list[Path]:
    return sorted((Path(run["output_dir"]) / row.study_instance_uid).glob("*.dcm"))


def test_ten_patients_run_concurrently_against_the_built_in_receivers_and_verify(scenarios, tmp_path):
    result = runsim("--patients", "10", "--concurrency", "4", "--seed", "7", "--max-instances", "2",
                    "--output", str(tmp_path / "run"))
    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["passed"] == 10 and result["verified"] == 10
    assert result["acks"] == {"AA": 30}  # ADT + ORM + ORU per patient
    assert result["worklist_found"] == 10 and result["mpps"] == 20
    assert result["received"]["dicom_instances"] == result["instances_stored"] == result["instances_generated"]
    assert result["committed"] == result["instances_stored"]
    run = Run.objects.get(pk=result["run_id"])
    rows = list(run.patients.order_by("index"))
    assert {r.status for r in rows} == {"passed"}
    # no modality mismatch in any DICOM file: every image carries its bound exam's modality and study, and
    # every ionising-radiation study its dose report (simulations.documents)
    for row in rows:
        files = study_files(result, row)
        assert files, row.exam_code
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            # a PET/CT study holds its CT attenuation series beside the PET (PS3.3 A.21)
            dose_report = path.name in ("990_0001.dcm", "994_0001.dcm")  # X-ray / radiopharmaceutical dose SR
            expected = {"SR"} if dose_report else {row.modality} | ({"CT"} if row.modality == "PT" else set())
            assert ds.Modality in expected
            assert ds.StudyInstanceUID == row.study_instance_uid
            assert ds.AccessionNumber == row.accession_number
            assert ds.PatientID == row.patient_id
    # the MPPS N-SET lists exactly the series and instances that were sent
    for row in rows:
        folder = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
        mpps = pydicom.Dataset.from_json(json.loads((folder / "mpps-set.json").read_text()))
        referenced = {item.ReferencedSOPInstanceUID for series in mpps.PerformedSeriesSequence
                      for item in series.ReferencedImageSequence}
        referenced |= {item.ReferencedSOPInstanceUID for series in mpps.PerformedSeriesSequence
                       for item in series.ReferencedNonImageCompositeSOPInstanceSequence}
        sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in study_files(result, row)}
        assert referenced == sent
        assert len(mpps.PerformedSeriesSequence) == len({p.name.split("_")[0] for p in study_files(result, row)})
    # events are ordered and name the bound exam
    seqs = list(run.events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    bound = run.events.filter(type="exam.bound")
    assert bound.count() == 10
    assert {e.payload["exam_id"] for e in bound} == {r.exam_code for r in rows}
    assert all({"modality", "cpt", "name", "strategy"} <= set(e.payload) for e in bound)


@pytest.mark.interop
def test_a_run_against_dcmtk_storescp_and_wlmscpfs_is_consistent(scenarios, tmp_path):
    steps = [{"step_type": "REGISTER_PATIENT"}, {"step_type": "GENERATE_HL7", "setting": "any"},
             {"step_type": "SEND_HL7"}, {"step_type": "SEND_DMWL"}, {"step_type": "MPPS_IN_PROGRESS"},
             {"step_type": "GENERATE_DICOM"}, {"step_type": "SEND_DICOM"}, {"step_type": "MPPS_COMPLETED"},
             {"step_type": "SEND_REPORT"}]
    Scenario.objects.create(name="dcmtk chain", steps=steps)
    received = tmp_path / "storescp"
    with storescp(received) as pacs, wlmscpfs(tmp_path / "worklists") as (mwl, folder):
        result = runsim("--scenario", "dcmtk chain", "--patients", "4", "--seed", "3", "--max-instances", "2",
                        "--pacs", f"{pacs.ae_title}@127.0.0.1:{pacs.port}", "--worklist-dir", str(folder),
                        "--worklist", f"{mwl.ae_title}@127.0.0.1:{mwl.port}", "--output", str(tmp_path / "run"))
    assert result["status"] == "succeeded", result["patient_rows"]
    assert result["worklist_found"] == 4
    assert len(list(folder.glob("*.wl"))) == 4
    stored = list(received.rglob("*"))
    stored = [p for p in stored if p.is_file()]
    assert len(stored) == result["instances_stored"] == result["instances_generated"]
    rows = {r.study_instance_uid: r for r in RunPatient.objects.filter(run_id=result["run_id"])}
    for path in stored:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        row = rows[ds.StudyInstanceUID]
        # the images carry the exam's modality; the study's dose report is an SR (PS3.3 A.35.8 / A.35.14)
        modality = row.modality if ds.SeriesNumber < 990 else "SR"
        assert (ds.Modality, ds.AccessionNumber, ds.PatientID) == (modality, row.accession_number, row.patient_id)


def test_the_same_seed_gives_the_same_exams_patients_and_pixels(scenarios, tmp_path):
    first = runsim("--patients", "3", "--seed", "11", "--max-instances", "2", "--no-send",
                   "--output", str(tmp_path / "a"))
    second = runsim("--patients", "3", "--seed", "11", "--max-instances", "2", "--no-send",
                    "--output", str(tmp_path / "b"))
    assert first["status"] == second["status"] == "succeeded"

    def rows(result):
        # identifiers (accession, UIDs) are the run's own: tests/conformance/test_run_identity.py
        return [(r.exam_code, r.patient_id, r.patient_name, r.instances)
                for r in RunPatient.objects.filter(run_id=result["run_id"]).order_by("index")]

    assert rows(first) == rows(second)
    for a_row, b_row in zip(RunPatient.objects.filter(run_id=first["run_id"]).order_by("index"),
                            RunPatient.objects.filter(run_id=second["run_id"]).order_by("index"), strict=True):
        a_files, b_files = study_files(first, a_row), study_files(second, b_row)
        assert [p.name for p in a_files] == [p.name for p in b_files]
        for a, b in zip(a_files, b_files, strict=True):
            a_ds, b_ds = pydicom.dcmread(a), pydicom.dcmread(b)
            assert a_ds.get("PixelData") == b_ds.get("PixelData")  # None for a dose SR
    third = runsim("--patients", "3", "--seed", "12", "--max-instances", "2", "--no-send",
                   "--output", str(tmp_path / "c"))
    assert rows(third) != rows(first)


class RejectingRis:
    """An MLLP peer that accepts ADT but rejects (AR) every order of a female patient."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer) -> None:
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while b"\x1c\r" in buffer:
                    frame, buffer = buffer.split(b"\x1c\r", 1)
                    text = frame.lstrip(b"\x0b").decode()
                    segments = {s.split("|")[0]: s.split("|") for s in text.split("\r") if s}
                    msh, pid = segments["MSH"], segments.get("PID", [])
                    code = "AR" if msh[8].startswith("ORM") and len(pid) > 8 and pid[8] == "F" else "AA"
                    ack = (f"MSH|^~\\&|RIS|H|YEETER|H|20261125||ACK^O01^ACK|R{msh[9]}|P|2.5.1\r"
                           f"MSA|{code}|{msh[9]}|{'female orders refused' if code == 'AR' else ''}\r")
                    writer.write(b"\x0b" + ack.encode() + b"\x1c\r")
                    await writer.drain()
        finally:
            writer.close()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_failed_step_fails_that_patient_and_the_run_carries_on(scenarios, tmp_path):
    with RejectingRis() as ris:
        with pytest.raises(CommandError) as err:
            runsim("--patients", "8", "--seed", "5", "--max-instances", "1", "--hl7", f"127.0.0.1:{ris.port}",
                   "--output", str(tmp_path / "run"))
    assert err.value.returncode == 1
    result = json.loads(err.value.output)
    assert result["status"] == "failed"
    rows = list(RunPatient.objects.filter(run_id=result["run_id"]).order_by("index"))
    failed = [r for r in rows if r.status == "failed"]
    passed = [r for r in rows if r.status == "passed"]
    assert failed and passed and len(failed) + len(passed) == 8
    for row in failed:
        assert "step 3 (SEND_HL7)" in row.error and "AR" in row.error
        # what was generated before the failure is kept
        folder = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
        assert (folder / "orm.hl7").exists() and (folder / "adt.hl7").exists()
        assert RunEvent.objects.filter(patient=row, type="patient.failed", level="error").exists()
    assert result["acks"]["AR"] == len(failed)


def test_scenario_errors_are_usage_errors_naming_the_step(scenarios):
    Scenario.objects.create(name="backwards", steps=[{"step_type": "GENERATE_DICOM"},
                                                     {"step_type": "GENERATE_HL7", "modality": "CT"}])
    with pytest.raises(CommandError) as err:
        runsim("--scenario", "backwards")
    assert err.value.returncode == 2
    assert ("step 1 (GENERATE_DICOM): DICOM generation requires ExamSpec in run_context. Ensure a GENERATE_HL7 "
            "step runs before GENERATE_DICOM.") in str(err.value)
    with pytest.raises(CommandError, match="No scenario named 'nope'") as err:
        runsim("--scenario", "nope")
    assert err.value.returncode == 2
    with pytest.raises(CommandError, match="--patients must be at least 1"):
        runsim("--patients", "0")
    with pytest.raises(CommandError, match="No active exam in the catalog matches modality=MG, patient_sex=M|"
                                           "no active exam in the catalog matches modality=NM, setting=emergency"):
        runsim("--modality", "NM", "--setting", "emergency")


def test_a_run_can_be_cancelled_and_keeps_what_it_made(scenarios, tmp_path):
    from simulations.endpoints import EndpointSet
    from simulations.options import RunOptions
    from simulations.services import run_cancel, run_create, run_execute

    run = run_create(steps_json=Scenario.objects.get(name="Full scheduled workflow").steps, patients=5,
                     concurrency=2, endpoints=EndpointSet(), seed=1, arrival="poisson", rate_per_hour=3600,
                     options=RunOptions(output_dir=tmp_path / "run", send=False, max_instances_per_series=1,
                                        speed=0.05))
    worker = threading.Thread(target=run_execute, args=(Run.objects.get(pk=run.pk),))
    worker.start()
    deadline = time.monotonic() + 30
    while not RunPatient.objects.filter(run=run, status="passed").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    run_cancel(run=Run.objects.get(pk=run.pk))
    worker.join(30)
    assert not worker.is_alive()
    run.refresh_from_db()
    assert run.status == "cancelled"
    statuses = set(run.patients.values_list("status", flat=True))
    assert "passed" in statuses and "cancelled" in statuses
    assert run.events.filter(type="run.cancelled").exists()


def test_verify_run_finds_a_tampered_file(scenarios, tmp_path):
    result = runsim("--patients", "1", "--seed", "2", "--max-instances", "1", "--no-send", "--exam",
                    "MR-KNEE-RIGHT-WO", "--output", str(tmp_path / "run"))
    out = io.StringIO()
    call_command("verify_run", result["run_id"][:8], stdout=out)
    assert "All 1 patient(s)" in out.getvalue()
    row = RunPatient.objects.get(run_id=result["run_id"])
    path = study_files(result, row)[0]
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.save_as(path)
    out = io.StringIO()
    with pytest.raises(CommandError) as err:
        call_command("verify_run", result["run_id"], stdout=out)
    assert err.value.returncode == 1
    assert f"dicom {path.name} Modality is 'CT', expected 'MR'" in out.getvalue()


def test_a_pacs_aborting_mid_study_fails_the_patient_and_records_what_it_stored(scenarios, tmp_path):
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from tests.conftest import free_port

    received: list[str] = []

    def handle_store(event):
        if len(received) >= 2:
            event.assoc.abort()
            return 0xC000
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    ae = AE(ae_title="FLAKY_PACS")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        with pytest.raises(CommandError) as err:
            runsim("--exam", "CT-ABDPEL-W", "--patients", "1", "--seed", "8", "--max-instances", "3",
                   "--pacs", f"FLAKY_PACS@127.0.0.1:{port}", "--output", str(tmp_path / "run"))
    finally:
        server.shutdown()
    result = json.loads(err.value.output)
    row = RunPatient.objects.get(run_id=result["run_id"])
    assert row.status == "failed" and "step 7 (SEND_DICOM)" in row.error
    stored_event = RunEvent.objects.get(patient=row, type="dicom.stored")
    assert stored_event.level == "error" and stored_event.payload["stored"] == 2
    # 7 images and the study's dose SR
    assert result["instances_stored"] == 2 and result["instances_generated"] == row.instances == 8
    assert len(study_files(result, row)) == 8  # everything generated is kept


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_run_exists(scenarios, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the run directory should go")
    with pytest.raises(CommandError) as err:
        runsim("--patients", "1", "--output", str(blocker / "run"))
    assert err.value.returncode == 2
    assert str(err.value) == f"--output {blocker / 'run'}: {blocker} is not a directory."
    assert not Run.objects.exists()


@pytest.mark.parametrize("flag", ["--hl7", "--pacs"])
def test_a_peer_that_is_not_listening_fails_the_patient_clearly_and_keeps_the_files(scenarios, tmp_path, flag):
    from tests.conftest import free_port

    port = free_port()  # nothing listens here
    target = f"127.0.0.1:{port}" if flag == "--hl7" else f"NOBODY@127.0.0.1:{port}"
    with pytest.raises(CommandError) as err:
        runsim("--exam", "DX-CHEST-2V", "--patients", "1", "--seed", "1", flag, target,
               "--output", str(tmp_path / "run"))
    assert err.value.returncode == 1
    result = json.loads(err.value.output)
    row = RunPatient.objects.get(run_id=result["run_id"])
    step = "step 1 (REGISTER_PATIENT)" if flag == "--hl7" else "step 7 (SEND_DICOM)"
    assert row.status == "failed" and row.error.startswith(step), row.error
    assert str(port) in row.error
    folder = Path(result["output_dir"]) / "patients" / f"{row.index:05d}-{row.accession_number}"
    assert (folder / "order.json").exists()
    if flag == "--pacs":
        # generated before the send failed: two images and the dose SR
        assert len(study_files(result, row)) == row.instances == 3
