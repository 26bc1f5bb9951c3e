"""The simulator page's views: login everywhere, the API's validation and messages, one visibility
rule, files only from inside the run's folder."""

from __future__ import annotations

import io
import os
import re
import uuid
import zipfile

import pytest
from django.urls import reverse
from django.utils import timezone

from simulations.models import Run, RunEvent, RunPatient
from tests.page.conftest import PASSWORD, execute_small_run

pytestmark = pytest.mark.django_db

RUN_ID = "11111111-2222-3333-4444-555555555555"


def _run(owner=None, output_dir="", **fields) -> Run:
    return Run.objects.create(id=uuid.UUID(RUN_ID), steps=[{"step_type": "GENERATE_HL7"}], patient_count=1, seed=1,
                              owner=owner, output_dir=str(output_dir), **fields)


PAGES = ["/simulator/", "/simulator/launch/", "/simulator/runs/", f"/simulator/runs/{RUN_ID}/",
         f"/simulator/runs/{RUN_ID}/patients/1/", f"/simulator/runs/{RUN_ID}/patients/1/study.zip",
         f"/simulator/runs/{RUN_ID}/files/x.txt"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_anonymous_visitors_to_the_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path.replace('/', '%2F')}" or \
        response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", ["/simulator/launch/", "/simulator/endpoints/1/check/",
                                  f"/simulator/runs/{RUN_ID}/cancel/", f"/simulator/runs/{RUN_ID}/again/"])
def test_posts_from_anonymous_visitors_start_nothing(client, path, catalog):
    response = client.post(path, {"source": "exam", "exam_id": "MR-KNEE-RIGHT-WO"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert Run.objects.count() == 0


def test_the_root_goes_to_the_simulator(client):
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/simulator/")


def test_it_logs_in_with_a_django_account_and_lands_on_the_catalog(client, user, catalog):
    page = client.get("/accounts/login/")
    assert b'<label for="id_username">' in page.content and b'<label for="id_password">' in page.content
    wrong = client.post("/accounts/login/", {"username": "reader", "password": "nope"})
    assert wrong.status_code == 200 and b'role="alert"' in wrong.content
    response = client.post("/accounts/login/", {"username": "reader", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/simulator/"
    assert b"Exam catalog" in response.content


def test_the_catalog_filters_as_the_api_does_and_shows_each_exams_share(user_client, catalog):
    response = user_client.get("/simulator/", {"modality": "MR", "body_part": "any"})
    rows = response.context["rows"]
    assert {r["exam"].modality for r in rows} == {"MR"}
    assert {r["exam"].id for r in rows} == {"MR-KNEE-RIGHT-WO", "MR-KNEE-LEFT-WO"}
    shares = {r["exam"].id: round(r["share"], 1) for r in rows}
    assert shares == {"MR-KNEE-RIGHT-WO": 75.0, "MR-KNEE-LEFT-WO": 25.0}  # weights 30 and 10
    assert b"75.0 %" in response.content
    assert b'href="/simulator/launch/?source=filters&amp;modality=MR"' in response.content
    assert b"/simulator/launch/?source=exam&amp;exam_id=MR-KNEE-RIGHT-WO" in response.content


def test_the_catalog_shows_the_apis_message_beside_a_bad_filter(user_client, catalog):
    response = user_client.get("/simulator/", {"modality": "XX", "patient_age": "abc"})
    # The catalog API's own message (exams.apis.FilterSerializer), not a second copy.
    from generators.terms import Modality

    known = ", ".join(m.value for m in Modality)  # CT, MR, CR, DX, US, MG, NM, ... in the vocabulary's order
    assert response.context["errors"]["modality"] == [f'"XX" is not a known modality; use one of {known}.']
    assert response.context["errors"]["patient_age"] == ["A valid integer is required."]
    assert response.context["rows"] == []


def test_the_launch_form_answers_with_the_runs_apis_messages_beside_the_field(user_client, catalog):
    response = user_client.post("/simulator/launch/", {"source": "exam", "exam_id": "MR-KNEE-RIGHT-WO",
                                                       "patients": "0", "concurrency": "many", "send": "on"})
    assert response.status_code == 400
    errors = response.context["errors"]
    assert errors["patients"] == ["Ensure this value is greater than or equal to 1."]
    assert errors["concurrency"] == ["A valid integer is required."]
    html = response.content.decode()
    assert re.search(r'id="id_patients".*?\n.*?Ensure this value is greater than or equal to 1\.', html)
    assert Run.objects.count() == 0


def test_the_launch_form_puts_a_scenario_problem_on_the_field_that_caused_it(user_client, catalog):
    response = user_client.post("/simulator/launch/", {"source": "exam", "exam_id": "MR-NOPE", "send": "on"})
    assert response.status_code == 400
    assert response.context["errors"]["exam_id"] == [
        "step 2 (GENERATE_HL7): field exam_id: No exam with id 'MR-NOPE' in the catalog."]
    response = user_client.post("/simulator/launch/", {"source": "filters", "modality": "MG", "patient_sex": "M",
                                                       "send": "on"})
    assert response.status_code == 400 and "patient_sex" in response.context["errors"] or \
        "form" in response.context["errors"]


def test_the_launch_form_starts_a_run_owned_by_the_user(user_client, user, catalog):
    response = user_client.post("/simulator/launch/", {"source": "exam", "exam_id": "MR-KNEE-RIGHT-WO",
                                                       "patients": "3", "max_instances_per_series": "2",
                                                       "transfer_syntax": "rle", "send": "on"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/simulator/runs/{run.pk}/"
    assert (run.owner, run.api_key, run.patient_count) == (user, None, 3)
    assert run.options["max_instances_per_series"] == 2
    assert run.steps[1] == {"step_type": "GENERATE_HL7", "exam_id": "MR-KNEE-RIGHT-WO"}
    assert run.steps[5] == {"step_type": "GENERATE_DICOM"}
    assert run.options["transfer_syntax"] == "rle"
    assert set(run.options["builtin_kinds"]) == {"hl7", "storage", "mwl", "mpps"}


def test_a_user_sees_only_their_runs_and_staff_see_all(client, user, staff, django_user_model, run_dir):
    other = django_user_model.objects.create_user("other", password=PASSWORD)
    mine = Run.objects.create(steps=[], patient_count=1, seed=1, owner=user, scenario_name="mine")
    _run(owner=other, output_dir=run_dir, scenario_name="theirs")
    (run_dir / "secret.txt").write_text("x")
    client.force_login(user)
    assert [r.scenario_name for r in client.get("/simulator/runs/").context["page"]] == ["mine"]
    for path in PAGES[3:]:
        assert client.get(path).status_code == 404, path
    assert client.post(f"/simulator/runs/{RUN_ID}/cancel/").status_code == 404
    assert client.get(f"/simulator/runs/{mine.pk}/").status_code == 200
    assert client.get("/simulator/runs/not-a-uuid/").status_code == 404
    client.force_login(staff)
    assert {r.scenario_name for r in client.get("/simulator/runs/").context["page"]} == {"mine", "theirs"}
    assert client.get(f"/simulator/runs/{RUN_ID}/files/secret.txt").status_code == 200


def test_file_views_serve_only_from_inside_the_run_folder(staff_client, run_dir, tmp_path):
    _run(output_dir=run_dir)
    (run_dir / "patients").mkdir()
    (run_dir / "patients" / "orm.hl7").write_text("MSH|^~\\&|Y\r")
    outside = tmp_path / "outside.txt"
    outside.write_text("not for you")
    os.symlink(outside, run_dir / "link.txt")
    os.symlink(tmp_path, run_dir / "linkdir")
    base = f"/simulator/runs/{RUN_ID}/files/"
    ok = staff_client.get(base + "patients/orm.hl7")
    assert ok.status_code == 200 and b"".join(ok.streaming_content) == b"MSH|^~\\&|Y\r"
    assert ok["Content-Type"].startswith("text/plain")
    refused = ["../outside.txt", "patients/../../outside.txt", "%2E%2E/outside.txt", str(outside), "/" + str(outside),
               "link.txt", "linkdir/outside.txt", "patients/", "patients", "missing.txt", "patients/./orm.hl7",
               "patients%00/orm.hl7", "patients\\orm.hl7"]
    for path in refused:
        response = staff_client.get(base + path)
        # a NUL anywhere in a URL is refused before any view (yeeter/middleware.py): 400
        assert response.status_code == (400 if "%00" in path else 404), path
        assert b"not for you" not in response.content


def test_the_run_view_carries_the_socket_path_and_the_step_columns(user_client, user):
    run = Run.objects.create(steps=[{"step_type": "GENERATE_HL7"}, {"step_type": "WAIT"}], patient_count=2, seed=1,
                             owner=user)
    RunPatient.objects.create(run=run, index=0, patient_name="DOE^JANE", status="running", started_at=timezone.now())
    RunPatient.objects.create(run=run, index=1, status="pending")  # not started: counted waiting, no row
    response = user_client.get(f"/simulator/runs/{run.pk}/")
    data = response.context["page_data"]
    assert data["ws_path"] == f"/ws/runs/{run.pk}/"
    assert [s["type"] for s in data["steps"]] == ["GENERATE_HL7", "WAIT"]
    assert data["patients"] == [{"number": 1, "status": "running", "name": "DOE^JANE", "mrn": "", "exam": "",
                                 "accession": "", "error": ""}]
    assert data["patient_count"] == 2 and b'data-patient="2"' not in response.content
    assert b'href="/simulator/runs/%s/patients/1/"' % str(run.pk).encode() in response.content
    assert user_client.get(f"/simulator/runs/{run.pk}/patients/0/").status_code == 404
    assert user_client.get(f"/simulator/runs/{run.pk}/patients/1/").status_code == 200


def test_cancel_without_javascript_flags_the_run(user_client, user):
    run = Run.objects.create(steps=[], patient_count=1, seed=1, owner=user, status=Run.Status.RUNNING)
    response = user_client.post(f"/simulator/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.cancel_requested


def test_run_again_starts_a_new_run_with_the_same_parameters_and_a_new_seed(user_client, user, catalog):
    first = user_client.post("/simulator/launch/", {"source": "exam", "exam_id": "MR-KNEE-RIGHT-WO", "patients": "2",
                                                    "seed": "5", "max_instances_per_series": "1", "send": "on"})
    run = Run.objects.get()
    assert first.status_code == 302 and run.seed == 5
    response = user_client.post(f"/simulator/runs/{run.pk}/again/")
    again = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/simulator/runs/{again.pk}/"
    assert (again.steps, again.patient_count, again.options["max_instances_per_series"], again.owner) == \
        (run.steps, 2, 1, user)
    assert again.seed != run.seed


@pytest.mark.django_db(transaction=True)
def test_the_patient_story_shows_every_message_the_series_and_the_verification(client, catalog_tx,
                                                                              django_user_model):
    owner = django_user_model.objects.create_user("story", password=PASSWORD)
    run = execute_small_run(owner=owner)
    assert run.status == Run.Status.SUCCEEDED, run.error
    client.force_login(owner)
    response = client.get(f"/simulator/runs/{run.pk}/patients/1/")
    html = response.content.decode()
    context = response.context
    assert context["identity"]["accession_number"] == run.patients.get().accession_number
    titles = [m["title"] for m in context["messages_"]]
    assert titles == ["Registration (ADT)", "Order (ORM^O01)", "Report (ORU^R01)"]
    orm = context["messages_"][1]
    assert [line["segment"] for line in orm["lines"]][:2] == ["MSH", "PID"]
    assert {"ORC", "OBR", "ZDS"} <= {line["segment"] for line in orm["lines"]}
    assert '<span class="fld" title="OBR-4" data-field="OBR-4">' in html
    assert orm["acks"][0]["code"] == "AA" and orm["acks"][0]["lines"][1]["segment"] == "MSA"
    assert context["worklist"] and context["worklist_found"] and context["mpps_create"] and context["mpps_set"]
    assert any(r["keyword"] == "ScheduledProcedureStepSequence" for r in context["worklist"])
    series = context["series"]
    assert series and all(s["preview"] and s["count"] == 1 for s in series)
    preview = client.get(f"/simulator/runs/{run.pk}/files/{series[0]['preview']}")
    assert preview["Content-Type"] == "image/png" and b"".join(preview.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    checks = context["checks"]
    assert checks and all(c["ok"] for c in checks) and context["verification_ok"]
    assert {"orm", "worklist", "mpps-set", "dicom"} <= {c["artifact"] for c in checks}
    study = client.get(f"/simulator/runs/{run.pk}/patients/1/study.zip")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(study.streaming_content)))
    assert len(archive.namelist()) == sum(s["count"] for s in series)
    assert archive.testzip() is None


@pytest.mark.django_db(transaction=True)
def test_the_patient_story_lists_the_studys_documents_and_links_the_pdf_report(client, catalog_tx,
                                                                              django_user_model):
    owner = django_user_model.objects.create_user("documents", password=PASSWORD)
    run = execute_small_run(owner=owner, exam_id="CT-ABDPEL-W",
                            generate_dicom={"key_images": True, "text_report": True, "pdf_report": True})
    assert run.status == Run.Status.SUCCEEDED, run.error
    client.force_login(owner)
    response = client.get(f"/simulator/runs/{run.pk}/patients/1/")
    html = response.content.decode()
    documents = [s for s in response.context["series"] if s["document"]]
    assert [(s["number"], s["modality"], s["preview"]) for s in documents] == [
        (990, "SR", None), (991, "KO", None), (992, "SR", None), (993, "DOC", None)]
    assert all(s["preview"] and not s["document"] for s in response.context["series"] if s["number"] < 990)
    assert "Series 990: Radiation Dose Report" in html and "document (KO), no image" in html
    assert [s["pdf"] for s in documents if s["pdf"]] == [f"{run.patients.get().study_instance_uid}/993_0001.pdf"]
    link = f"/simulator/runs/{run.pk}/files/{documents[3]['pdf']}"
    assert f'href="{link}"' in html
    pdf = client.get(link)
    assert pdf["Content-Type"] == "application/pdf"
    assert b"".join(pdf.streaming_content).startswith(b"%PDF")


def test_admin_records_are_read_only_with_readable_json_and_links(staff_client, staff):
    run = Run.objects.create(steps=[{"step_type": "GENERATE_HL7"}], patient_count=1, seed=1,
                             summary={"passed": 1}, owner=staff)
    patient = RunPatient.objects.create(run=run, index=0, accession_number="A1")
    RunEvent.objects.create(run=run, seq=1, patient=patient, type="patient.passed", message="Patient 1 passed")
    page = staff_client.get(reverse("admin:simulations_run_change", args=[run.pk])).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    assert f'href="/simulator/runs/{run.pk}/"' in page and f"?run__id__exact={run.pk}" in page
    assert '<pre style="white-space: pre-wrap; margin: 0">{\n  &quot;passed&quot;: 1\n}</pre>' in page
    events = staff_client.get(reverse("admin:simulations_runevent_changelist"), {"q": "passed"}).content.decode()
    assert "column-patient_number" in events and "Patient 1 passed" in events
    patient_page = staff_client.get(reverse("admin:simulations_runpatient_change", args=[patient.pk])).content.decode()
    assert 'name="_save"' not in patient_page and "patient 1 of" in patient_page
    assert staff_client.post(reverse("admin:simulations_run_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
    assert Run.objects.filter(pk=run.pk).exists()


def test_the_forms_check_button_echoes_a_dicom_peer_and_reports_one_that_is_gone(user_client, tmp_path):
    from simulations.models import Endpoint
    from simulations.transport.dimse.storage_scp import StorageScp
    from tests.conftest import free_port

    scp = StorageScp(storage_dir=tmp_path / "store")
    scp.start()
    try:
        up = Endpoint.objects.create(name="pacs", kind="storage", host="127.0.0.1", port=scp.port,
                                     ae_title=scp.ae_title)
        gone = Endpoint.objects.create(name="gone", kind="mwl", host="127.0.0.1", port=free_port(), ae_title="MWL",
                                       timeout=3)
        launch = user_client.get("/simulator/launch/").content.decode()
        assert f'data-check-url="/simulator/endpoints/{up.pk}/check/"' in launch
        ok = user_client.post(f"/simulator/endpoints/{up.pk}/check/").json()
        assert (ok["ok"], ok["method"], ok["error"]) == (True, "C-ECHO", None) and 0 < ok["latency_ms"] < 1000
        failed = user_client.post(f"/simulator/endpoints/{gone.pk}/check/").json()
        assert failed["ok"] is False and f"MWL@127.0.0.1:{gone.port}" in failed["error"]
        assert user_client.get(f"/simulator/endpoints/{up.pk}/check/").status_code == 405
        assert user_client.post("/simulator/endpoints/999999/check/").status_code == 404
    finally:
        scp.stop()


def test_a_damaged_patient_folder_is_shown_not_a_500(staff_client, run_dir):
    run = _run(output_dir=run_dir)
    RunPatient.objects.create(run=run, index=0, accession_number="A1", status="failed")
    folder = run_dir / "patients" / "00000-A1"
    folder.mkdir(parents=True)
    (folder / "order.json").write_text("{not json")
    (folder / "orm.hl7").write_bytes(b"MSH|\xff\xfe|broken")
    (folder / "worklist.json").write_text('{"00100010": {"vr": "XX"}}')
    response = staff_client.get(f"/simulator/runs/{RUN_ID}/patients/1/")
    assert response.status_code == 200
    assert response.context["identity"] is None
    assert "could not read orm.hl7" in response.content.decode()


def test_the_exam_list_in_admin_links_each_active_exam_to_the_launch_form(staff_client, catalog):
    page = staff_client.get(reverse("admin:exams_examspec_changelist")).content.decode()
    assert 'href="/simulator/launch/?source=exam&amp;exam_id=MR-KNEE-RIGHT-WO">simulate</a>' in page


def test_launch_errors_are_tied_to_their_field_for_assistive_technology(user_client, catalog):
    html = user_client.post("/simulator/launch/", {"source": "exam", "exam_id": "MR-KNEE-RIGHT-WO",
                                                   "patients": "0"}).content.decode()
    assert 'id="id_patients" name="patients" aria-invalid="true" aria-describedby="id_patients-error"' in html
    assert '<div id="id_patients-error"><p class="error">Ensure this value' in html
    assert 'id="id_seed" name="seed" aria-invalid' not in html


def test_the_endpoint_check_action_in_admin_reports_each_peer(staff_client):
    from simulations.models import Endpoint
    from tests.conftest import free_port

    gone = Endpoint.objects.create(name="gone", kind="mpps", host="127.0.0.1", port=free_port(), ae_title="MPPS",
                                   timeout=2)
    response = staff_client.post(reverse("admin:simulations_endpoint_changelist"),
                                 {"action": "check_endpoints", "_selected_action": [gone.pk]}, follow=True)
    text = response.content.decode()
    assert f'<li class="error">Gone (MPPS@127.0.0.1:{gone.port}): C-ECHO failed: MPPS@127.0.0.1:{gone.port}' in text


def test_the_launch_form_builds_the_runs_api_body_for_scenarios_and_filters(user_client, user, catalog):
    from simulations.scenario_io import load_scenarios

    load_scenarios()
    user_client.post("/simulator/launch/", {"source": "scenario", "scenario": "Outpatient MR knee", "patients": "2",
                                            "send": "on"})
    by_name = Run.objects.get()
    assert (by_name.scenario_name, by_name.patient_count) == ("Outpatient MR knee", 2)
    user_client.post("/simulator/launch/", {"source": "scenario", "scenario": "Outpatient MR knee",
                                            "transfer_syntax": "jpegls", "send": "on"})
    with_syntax = Run.objects.exclude(pk=by_name.pk).get()
    assert (with_syntax.scenario_name, with_syntax.options["transfer_syntax"]) == ("Outpatient MR knee", "jpegls")
    Run.objects.all().delete()
    response = user_client.post("/simulator/launch/", {"source": "filters", "modality": "MR", "body_part": "KNEE",
                                                       "laterality": "any", "setting": "any", "patient_sex": "F",
                                                       "patient_age": "40", "send": "on"})
    assert response.status_code == 302, response.context["errors"]
    assert Run.objects.get().steps[1] == {"step_type": "GENERATE_HL7", "modality": "MR", "body_part": "KNEE",
                                         "sex": "F", "age": 40}
    unknown = user_client.post("/simulator/launch/", {"source": "scenario", "scenario": "Nope", "send": "on"})
    assert unknown.context["errors"]["scenario"] == ["No scenario named 'Nope'."]
