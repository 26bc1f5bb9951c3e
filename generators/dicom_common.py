"""The DICOM attributes every builder writes alike: the patient, code items, dates and times.

The worklist item (:mod:`generators.worklist`), the MPPS data sets (:mod:`generators.mpps`), the image
IODs (:mod:`generators.dicom.iods`) and the SR/PDF documents (:mod:`generators.dicom.sr`) all carry the
same patient, the same coded entries and the same date/time formats; each builder used to write them on
its own. They are written here once:

* :func:`patient_attributes`: Patient Identification and Demographic attributes (PS3.3 C.7.1.1 Patient
  module; PS3.4 Table K.6-1 and Table F.7.2-1 carry the same five), :func:`patient_age` (AS, C.7.2.2).
* :func:`code_item` / :func:`catalog_code_item`: a Code Sequence Macro item (PS3.3 Table 8.8-1).
* :func:`station_name`: the Station Name (0008,1010) of the order's station.
* :func:`set_study` and :func:`set_requested_procedure`: what every image and document of the order's
  study carries alike (Patient, General Study, Patient Study; the Request Attributes / Referenced
  Request item), and :func:`order_texts`, the order's free texts that decide the character set.
* :func:`dicom_date`, :func:`dicom_time`, :func:`dicom_datetime`: DA, TM and DT values (PS3.5 §6.2).

Clipping to a VR's length is :func:`generators.vr.clip`, not here: :mod:`generators.vr` holds the
PS3.5 length table and cuts with it in :func:`~generators.vr.clean_dataset` too, and it sits below the
domain types (:mod:`generators.types` imports it), so the cut can live nowhere above it without a second
copy or an import cycle. This module is the one above: it knows :class:`~generators.types.Patient` and
:class:`~generators.types.Code` and builds attributes and items from them. It lives in ``generators/``
rather than ``generators/dicom/`` because the worklist and MPPS builders must not load the image
package (numpy phantoms) to write a patient.
"""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators.types import Code, Order, Patient
from generators.vr import clip

# Names are non-ASCII (NÚÑEZ, ZOË): UTF-8 is the one character set every modern modality reads (PS3.3 C.12.1.1.2).
SPECIFIC_CHARACTER_SET = "ISO_IR 192"


def dicom_date(value: dt.date | dt.datetime) -> str:
    """DA (PS3.5 §6.2): ``YYYYMMDD``."""
    return value.strftime("%Y%m%d")


def dicom_time(value: dt.datetime) -> str:
    """TM (PS3.5 §6.2): ``HHMMSS`` (whole seconds: nothing the simulator schedules is more precise)."""
    return value.strftime("%H%M%S")


def dicom_datetime(value: dt.datetime) -> str:
    """DT (PS3.5 §6.2): ``YYYYMMDDHHMMSS``, whole seconds, no UTC offset (local time, as the DA/TM pairs)."""
    return value.strftime("%Y%m%d%H%M%S")


def patient_age(birth: dt.date, on: dt.date) -> str:
    """Patient's Age (0010,1010) AS on ``on`` (PS3.5 §6.2 AS: ``nnnD``, ``nnnM`` or ``nnnY``)."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    days = (on - birth).days
    return f"{max(days // 30, 0):03d}M" if days >= 60 else f"{max(days, 0):03d}D"


def patient_attributes(patient: Patient) -> dict[str, str]:
    """Patient's Name, ID, Issuer of Patient ID, Birth Date and Sex of ``patient`` by keyword (PS3.3 C.7.1.1).

    A map rather than a data set, so that the worklist's key list (:func:`generators.worklist.build_worklist_item`)
    takes it as its values; :func:`set_patient` writes it into a data set."""
    return {
        "PatientName": patient.name.dicom,
        "PatientID": patient.mrn,
        "IssuerOfPatientID": patient.issuer,
        "PatientBirthDate": dicom_date(patient.birth_date),
        "PatientSex": str(patient.sex),
    }


def set_patient(ds: Dataset, patient: Patient) -> None:
    """Write :func:`patient_attributes` of ``patient`` into ``ds``."""
    for keyword, value in patient_attributes(patient).items():
        setattr(ds, keyword, value)


def station_name(order: Order) -> str:
    """Station Name (0008,1010, SH): the station's name, or else its AE title, as the images and documents carry it."""
    return clip(order.station_name or order.station_ae_title, "SH")


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence Macro item (PS3.3 Table 8.8-1, basic coded entry); Code Meaning clipped to LO."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = clip(meaning, "LO")
    return item


def catalog_code_item(code: Code) -> Dataset:
    """The Code Sequence Macro item of a catalog or terminology :class:`~generators.types.Code`."""
    return code_item(code.code, str(code.scheme), code.display)


def order_texts(order: Order) -> list[str]:
    """The order's free texts an image or document carries: if any is not ASCII, it declares UTF-8."""
    return [order.patient.name.dicom, order.referring.name.dicom, order.exam.description, order.indication.text,
            order.facility, order.patient.issuer]


def set_study(ds: Dataset, order: Order, *, started_at: dt.datetime) -> None:
    """The study-level attributes of ``order`` that every image and document of its study carries alike
    (so ``dcentvfy`` finds one patient and one study): Patient (PS3.3 C.7.1.1), General Study (C.7.2.1,
    study date/time ``started_at``), Patient Study's Patient's Age and Admitting Diagnoses (C.7.2.2), and
    the Station Name of General Equipment (C.7.5.1)."""
    ds.StudyDate, ds.StudyTime = dicom_date(started_at), dicom_time(started_at)
    ds.AccessionNumber = order.accession_number
    ds.InstitutionName = order.facility
    ds.ReferringPhysicianName = order.referring.name.dicom
    ds.StationName = station_name(order)
    ds.StudyDescription = clip(order.exam.description)
    ds.ProcedureCodeSequence = Sequence([catalog_code_item(order.exam.primary_code)])
    ds.AdmittingDiagnosesDescription = clip(order.indication.text)
    set_patient(ds, order.patient)
    ds.PatientAge = patient_age(order.patient.birth_date, started_at.date())
    ds.StudyInstanceUID = order.study_instance_uid
    ds.StudyID = order.study_id


def set_requested_procedure(item: Dataset, order: Order) -> None:
    """The requested procedure of ``order`` in a Request Attributes Sequence item (PS3.3 C.7.3.1, Table
    10-9) or a Referenced Request Sequence item (C.17.2.1): accession, ID, description, code, reason."""
    item.AccessionNumber = order.accession_number
    item.RequestedProcedureID = clip(order.requested_procedure_id, "SH")
    item.RequestedProcedureDescription = clip(order.exam.description)
    item.RequestedProcedureCodeSequence = Sequence([catalog_code_item(order.exam.primary_code)])
    item.ReasonForTheRequestedProcedure = clip(order.indication.text)
