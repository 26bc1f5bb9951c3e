"""One order, one identity: ADT, ORM, the worklist item, MPPS and every DICOM instance carry the same set."""

from __future__ import annotations

import random

import hl7
import pydicom
import pytest

from generators.dicom import write_study
from generators.hl7 import HL7Config, build_adt, build_orm
from generators.identity import mint_order
from generators.mpps import build_mpps_in_progress
from generators.patients import generate_patient
from generators.terms import Modality
from generators.worklist import build_worklist_item
from tests.examples import EXAMS, FIXED_NOW, INDICATION

CONFIG = HL7Config()


@pytest.mark.parametrize("modality", list(Modality))
def test_the_identity_set_is_identical_across_hl7_worklist_mpps_and_every_instance(modality, tmp_path):
    rng = random.Random(f"identity/{modality}")
    exam = EXAMS[modality]
    patient = generate_patient(rng, today=FIXED_NOW.date(), sex=exam.required_sex, min_age=exam.min_age,
                               max_age=exam.max_age)
    order = mint_order(exam=exam, patient=patient, indication=INDICATION, rng=rng, now=FIXED_NOW)
    adt = hl7.parse(build_adt(order, config=CONFIG, now=FIXED_NOW, control_id="C1"))
    orm = hl7.parse(build_orm(order, config=CONFIG, now=FIXED_NOW, control_id="C2"))
    mwl = build_worklist_item(order)
    mpps = build_mpps_in_progress(order, started_at=FIXED_NOW, station_ae_title="MOD1")
    study = write_study(order, tmp_path, seed=3, now=FIXED_NOW, max_instances_per_series=2, previews=False)
    files = sorted(study.study_dir.glob("*.dcm"))
    assert len(files) == study.instance_count >= len(exam.series)

    family, given = patient.name.family, patient.name.given
    for msg in (adt, orm):
        assert (msg["PID.F3.R1.C1"], msg["PID.F5.R1.C1"], msg["PID.F5.R1.C2"]) == (patient.mrn, family, given)
        assert (msg["PID.F7"][:8], msg["PID.F8"]) == (patient.birth_date.strftime("%Y%m%d"), patient.sex.value)
    assert (orm["OBR.F18"], orm["OBR.F19"], orm["ZDS.F1.R1.C1"]) == (
        order.accession_number, order.requested_procedure_id, order.study_instance_uid)
    assert (orm["OBR.F4.R1.C1"], orm["OBR.F4.R1.C2"], orm["ZDS.F2"], orm["ZDS.F3"]) == (
        exam.primary_code.code, exam.description, exam.body_part, exam.laterality.value)

    sps = mwl.ScheduledProcedureStepSequence[0]
    assert (mwl.PatientID, str(mwl.PatientName), mwl.AccessionNumber, mwl.StudyInstanceUID,
            mwl.RequestedProcedureID, sps.ScheduledProcedureStepID, sps.Modality,
            mwl.RequestedProcedureCodeSequence[0].CodeValue) == (
        patient.mrn, patient.name.dicom, order.accession_number, order.study_instance_uid,
        order.requested_procedure_id, order.sps_id, exam.modality.value, exam.primary_code.code)
    ssa = mpps.ScheduledStepAttributesSequence[0]
    assert (mpps.PatientID, ssa.AccessionNumber, ssa.StudyInstanceUID, ssa.ScheduledProcedureStepID) == (
        patient.mrn, order.accession_number, order.study_instance_uid, order.sps_id)
    assert mpps.PerformedProcedureStepID == order.pps_id != order.sps_id

    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        request = ds.RequestAttributesSequence[0]
        assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
            patient.mrn, patient.name.dicom, patient.birth_date.strftime("%Y%m%d"), patient.sex.value)
        assert (ds.AccessionNumber, ds.StudyInstanceUID, ds.StudyID, ds.Modality, ds.BodyPartExamined,
                ds.StudyDescription) == (order.accession_number, order.study_instance_uid, order.study_id,
                                         # PET/CT: series 1 is the attenuation-correction CT, sent as CT
                                         "CT" if exam.modality == Modality.PT and ds.SeriesNumber == 1
                                         else exam.modality.value, exam.body_part, exam.description)
        assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == (
            order.requested_procedure_id, order.sps_id)


def test_identifiers_come_from_their_own_stream_and_the_rest_from_the_content_stream() -> None:
    exam = EXAMS[Modality.CT]
    patient = generate_patient(random.Random(1), today=FIXED_NOW.date())
    a = mint_order(exam=exam, patient=patient, indication=INDICATION, rng=random.Random(5), now=FIXED_NOW,
                   ids=random.Random("run-a"))
    b = mint_order(exam=exam, patient=patient, indication=INDICATION, rng=random.Random(5), now=FIXED_NOW,
                   ids=random.Random("run-b"))
    again = mint_order(exam=exam, patient=patient, indication=INDICATION, rng=random.Random(5), now=FIXED_NOW,
                       ids=random.Random("run-a"))
    assert (a.priority, a.referring) == (b.priority, b.referring)
    minted = ("accession_number", "placer_order_number", "filler_order_number", "visit_number",
              "study_instance_uid", "mpps_uid", "pps_id", "sps_id", "requested_procedure_id")
    assert all(getattr(a, f) != getattr(b, f) for f in minted)
    assert a == again
    assert len(a.pps_id) <= 16 and a.pps_id.startswith("PPS") and a.mpps_uid.startswith("2.25.")
