"""Radiopharmaceutical Radiation Dose SR (PS3.3 A.35.14, SOP Class 1.2.840.10008.5.1.4.1.1.88.68) of a PET study.

Template (PS3.16): TID 10021 Radiopharmaceutical Radiation Dose — Procedure reported (Radiopharmaceutical
Administration) with its intent, and one TID 10022 Radiopharmaceutical Administration Event Data: the
Radiopharmaceutical agent with its Radionuclide and Radionuclide Half Life, the Radiopharmaceutical
Administration Event UID, the Radiopharmaceutical Start and Stop DateTime, the Administered activity (MBq)
and the Route of administration.

Every value is the one the PET images carry in their Radiopharmaceutical Information Sequence (PET Isotope
module C.8.9.2): the same tracer codes, the same activity (the images' Radionuclide Total Dose, in Bq), the
same injection times and route — all from :func:`generators.dicom.phantoms_pet.dose_for` at the PET series'
acquisition time, exactly as :func:`generators.dicom.iods.series_dataset` computes them. The IOD's Modality
is SR (SR Document Series module, C.17.1). Its relationship constraints (Table A.35.14-2) allow no
HAS OBS CONTEXT item under a CONTAINER, so the report has no root observer context: the PET scanner is
named by the General and Enhanced General Equipment modules.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from pydicom.dataset import Dataset

from generators.dicom import phantoms_pet
from generators.dicom.sr import dose
from generators.dicom.sr import items as sr
from generators.dicom.sr.document import AcquiredSeries, DocumentSeries, StudyContext
from generators.terms import Modality
from generators.types import Order
from generators.uids import new_uid

RADIOPHARMACEUTICAL_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
RADIOPHARMACEUTICAL_MODALITIES = frozenset({Modality.PT})

# --- codes (PS3.16 Annex D DCM, SNOMED CT, UCUM) ---------------------------------------------------
REPORT = ("113500", "DCM", "Radiopharmaceutical Radiation Dose Report")
ADMINISTRATION = ("113502", "DCM", "Radiopharmaceutical Administration")
AGENT = ("349358000", "SCT", "Radiopharmaceutical agent")
RADIONUCLIDE = ("89457008", "SCT", "Radionuclide")
HALF_LIFE = ("304283002", "SCT", "Radionuclide Half Life")
EVENT_UID = ("113503", "DCM", "Radiopharmaceutical Administration Event UID")
START = ("123003", "DCM", "Radiopharmaceutical Start DateTime")
STOP = ("123004", "DCM", "Radiopharmaceutical Stop DateTime")
ADMINISTERED_ACTIVITY = ("113507", "DCM", "Administered activity")
ROUTE = ("410675002", "SCT", "Route of administration")
INTRAVENOUS = ("47625008", "SCT", "Intravenous route")  # CID 11, as the images' Administration Route Code Sequence
MBQ = ("MBq", "UCUM", "MBq")


def pet_series(study: StudyContext) -> AcquiredSeries:
    """The emission series of a PET/CT study (the one without a tube voltage, :func:`phantoms_pet.is_ct_series`)."""
    for series in study.series:
        if not phantoms_pet.is_ct_series(series.spec.kvp):
            return series
    raise ValueError("a radiopharmaceutical dose report needs the study's PET series")


def administration(order: Order, study: StudyContext) -> phantoms_pet.Dose:
    """The administration the PET images record (their Radiopharmaceutical Information Sequence)."""
    return phantoms_pet.dose_for(order.exam, order.patient, pet_series(study).acquired_at)


def build_radiopharmaceutical_dose_sr(order: Order, study: StudyContext, doc: DocumentSeries, *,
                                      rng: random.Random, now: dt.datetime) -> Dataset:
    """The Radiopharmaceutical Radiation Dose report (TID 10021) of a PET study, created at ``now``.

    ``rng`` draws the Radiopharmaceutical Administration Event UID: the same state gives the same report.
    """
    modality = Modality(order.modality)
    if modality not in RADIOPHARMACEUTICAL_MODALITIES:
        raise ValueError(f"{modality} has no radiopharmaceutical administration to report")
    tracer = phantoms_pet.tracer_for(order.exam)
    given = administration(order, study)
    event = sr.container(sr.CONTAINS, ADMINISTRATION, [
        sr.code_item(sr.CONTAINS, AGENT, tracer.code, [
            sr.code_item(sr.HAS_PROPERTIES, RADIONUCLIDE, tracer.nuclide),
            sr.num(sr.HAS_PROPERTIES, HALF_LIFE, dose.round_decimal(tracer.half_life_s, 1), dose.SECONDS),
        ]),
        sr.uidref(sr.CONTAINS, EVENT_UID, new_uid(rng)),
        sr.datetime_item(sr.CONTAINS, START, given.injected_at),
        sr.datetime_item(sr.CONTAINS, STOP, given.injection_ended_at),
        sr.num(sr.CONTAINS, ADMINISTERED_ACTIVITY, Decimal(repr(given.total_mbq)).normalize(), MBQ),
        sr.code_item(sr.CONTAINS, ROUTE, INTRAVENOUS),
    ])
    content = [
        dose.procedure_reported(order, ADMINISTRATION),
        event,
    ]
    return dose.dose_document(order, study, doc, content, "10021", now=now,
                              sop_class_uid=RADIOPHARMACEUTICAL_RADIATION_DOSE_SR, title=REPORT)
