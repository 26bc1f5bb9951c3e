"""The identity set of one order, minted once (DESIGN.md: "One identity set is minted once per order").

Everything that must agree between the HL7 order, the worklist entry, MPPS, the DICOM instances and
the report comes from the :class:`~generators.types.Order` this module returns; nothing downstream
mints its own accession number or Study Instance UID.
"""

from __future__ import annotations

import datetime as dt
import random

from generators.mpps import performed_procedure_step_id
from generators.terms import CareSetting, Priority
from generators.types import ExamInfo, Indication, Order, Patient, PersonName, Provider
from generators.uids import new_uid

# Referring physicians are drawn from a small fixed roster: real departments see the same names
# again and again, and interface engines often key on the provider ID.
REFERRING_ROSTER: tuple[Provider, ...] = (
    Provider("1234567893", PersonName("HOUSE", "GREGORY", "", "", "MD")),
    Provider("1457382916", PersonName("GREY", "MEREDITH", "E", "", "MD")),
    Provider("1093847561", PersonName("O'MALLEY", "GEORGE", "", "", "MD")),
    Provider("1689203745", PersonName("NÚÑEZ", "ISABEL", "M", "", "MD")),
    Provider("1320984756", PersonName("SMITH-JONES", "PRIYA", "", "", "DO")),
    Provider("1776543210", PersonName("KOWALSKI", "ANNA", "", "", "MD")),
    Provider("1555012347", PersonName("OKAFOR", "CHIDI", "A", "", "MD")),
    Provider("1999887766", PersonName("LINDQVIST", "ERIK", "", "", "MD")),
)

# Priority mix by care setting: emergency orders are mostly STAT, outpatient ones routine.
_PRIORITY_WEIGHTS: dict[CareSetting, tuple[tuple[Priority, ...], tuple[int, ...]]] = {
    CareSetting.EMERGENCY: ((Priority.STAT, Priority.ASAP, Priority.ROUTINE), (70, 20, 10)),
    CareSetting.INPATIENT: ((Priority.STAT, Priority.ASAP, Priority.ROUTINE), (15, 25, 60)),
    CareSetting.OUTPATIENT: ((Priority.STAT, Priority.ASAP, Priority.ROUTINE), (1, 4, 95)),
}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def mint_order(
    *,
    exam: ExamInfo,
    patient: Patient,
    indication: Indication,
    rng: random.Random,
    now: dt.datetime,
    setting: CareSetting | None = None,
    priority: Priority | None = None,
    station_ae_title: str = "MODALITY1",
    station_name: str = "",
    facility: str = "YEETER_HOSP",
    schedule_delay: dt.timedelta | None = None,
    ids: random.Random | None = None,
) -> Order:
    """Mint the identity set of one order for ``exam`` and ``patient``.

    Accession numbers are 16 characters (DICOM SH): ``A`` and 15 digits drawn from ``rng``, so the
    same seed gives the same accession on any day and distinct seeds collide with negligible
    probability (about 5e-4 over a million orders). Requested procedure and SPS IDs derive from it
    (IHE RAD TF-2 4.4: one requested procedure per order here, one SPS per requested procedure);
    placer/filler order numbers are distinct from the accession as in a real RIS. ``now`` is the order time;
    the step is scheduled ``schedule_delay`` later (default: immediately, which is what a simulator driving a
    modality wants). The performed procedure step is minted here too: its MPPS SOP Instance UID and the PPS
    ID derived from it (:func:`generators.mpps.performed_procedure_step_id`), used by MPPS and every image.

    Identifiers (accession, order and visit numbers, Study Instance UID, MPPS UID, PPS ID) come from ``ids``,
    everything else (priority, referring physician) from ``rng``. The runner seeds ``ids`` with the run's
    identity so that the same seed in two runs gives the same exams and patients but never the same UIDs or
    accession numbers (a PACS would merge the two studies); ``ids`` defaults to ``rng``.
    """
    ids = rng if ids is None else ids
    if setting is None:
        setting = exam.care_settings[0] if exam.care_settings else CareSetting.OUTPATIENT
    if priority is None:
        choices, weights = _PRIORITY_WEIGHTS[setting]
        priority = rng.choices(choices, weights)[0]
    digits = _digits(ids, 15)
    accession = f"A{digits}"
    placer, filler = f"P{_digits(ids, 9)}", f"F{_digits(ids, 9)}"
    study_uid = new_uid(ids)
    visit = f"V{_digits(ids, 9)}"
    referring = rng.choice(REFERRING_ROSTER)
    mpps_uid = new_uid(ids)
    return Order(
        patient=patient,
        exam=exam,
        setting=setting,
        priority=priority,
        indication=indication,
        accession_number=accession,
        placer_order_number=placer,
        filler_order_number=filler,
        requested_procedure_id=f"RP{digits[1:]}",
        sps_id=f"SPS{digits[2:]}",
        study_instance_uid=study_uid,
        visit_number=visit,
        ordered_at=now,
        scheduled_at=now + (schedule_delay or dt.timedelta(0)),
        referring=referring,
        station_ae_title=station_ae_title,
        station_name=station_name,
        facility=facility,
        mpps_uid=mpps_uid,
        pps_id=performed_procedure_step_id(mpps_uid),
    )
