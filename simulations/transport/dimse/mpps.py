"""Modality Performed Procedure Step over DIMSE (PS3.4 Annex F): N-CREATE / N-SET SCU and SCP.

The SCU side sends what :mod:`generators.mpps` builds (IHE RAD-6 IN PROGRESS, RAD-7 COMPLETED /
DISCONTINUED). :class:`MppsScp` is our built-in MPPS SCP: it records every instance (current
dataset + history) and enforces the state machine of PS3.4 F.7.2:

============================================================  ==========================
request                                                       status
============================================================  ==========================
N-CREATE, UID already known                                   0x0111 Duplicate SOP instance
N-CREATE without Affected SOP Instance UID                    0x0110 Processing failure
N-CREATE, a Type 1 attribute absent                           0x0120 Missing attribute
N-CREATE, a Type 1 attribute empty                            0x0121 Missing attribute value
N-CREATE, status not IN PROGRESS (F.7.2.1.2)                  0x0106 Invalid attribute value
N-SET, UID unknown                                            0x0112 No such object instance
N-SET after COMPLETED / DISCONTINUED (F.7.2.2.2)              0x0110 Processing failure
N-SET, status not IN PROGRESS / COMPLETED / DISCONTINUED      0x0106 Invalid attribute value
N-SET of an attribute Table F.7.2-1 marks "Not allowed"       0x0106 Invalid attribute value
N-SET to a final status without the final state attributes    0x0110 Processing failure
SOP Instance UID over 64 characters, with NUL or non-digits   0x0117 Invalid object instance
a UI attribute value that is no UID (PS3.5 §9.1)              0x0106 Invalid attribute value
============================================================  ==========================

PS3.7 C.5.9 defines 0x0117 for "a violation of the UID construction rules"; the check runs before
anything else, so such a UID never reaches the registry or the log as a traceback.

Size (over the ~400 lines of simulations/): the SCU and the SCP of one SOP class together, so that the
state machine in the table above and both sides of it are read, and changed, in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.sop_class import ModalityPerformedProcedureStep, Verification
from pynetdicom.status import code_to_category

from generators.mpps import FINAL_STATUSES, IN_PROGRESS, STATUSES
from generators.vr import clip
from simulations.transport.dimse.common import DicomPeer, PynetdicomScp, associate
from simulations.transport.errors import SendError

logger = logging.getLogger(__name__)

# PS3.7 C.4.x DIMSE-N statuses used by PS3.4 F.7.2.
SUCCESS = 0x0000
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
INVALID_OBJECT_INSTANCE = 0x0117
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
RESOURCE_LIMITATION = 0x0213

# PS3.4 Table F.7.2-1: Type 1 attributes of the N-CREATE.
_N_CREATE_TYPE_1 = (
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus",
    "Modality",
)


# PS3.4 Table F.7.2-1: top-level attributes whose N-SET usage is "Not allowed" (the N-CREATE sets
# them once: identity, patient, scheduling and start of the step).
_N_SET_NOT_ALLOWED = {
    0x00080016: "SOP Class UID",
    0x00080018: "SOP Instance UID",
    0x00080060: "Modality",
    0x00081120: "Referenced Patient Sequence",
    0x00100010: "Patient's Name",
    0x00100020: "Patient ID",
    0x00100021: "Issuer of Patient ID",
    0x00100024: "Issuer of Patient ID Qualifiers Sequence",
    0x00100030: "Patient's Birth Date",
    0x00100040: "Patient's Sex",
    0x00101002: "Other Patient IDs Sequence",
    0x00200010: "Study ID",
    0x00380010: "Admission ID",
    0x00380014: "Issuer of Admission ID Sequence",
    0x00380060: "Service Episode ID",
    0x00380062: "Service Episode Description",
    0x00380064: "Issuer of Service Episode ID Sequence",
    0x00400241: "Performed Station AE Title",
    0x00400242: "Performed Station Name",
    0x00400243: "Performed Location",
    0x00400244: "Performed Procedure Step Start Date",
    0x00400245: "Performed Procedure Step Start Time",
    0x00400253: "Performed Procedure Step ID",
    0x00400270: "Scheduled Step Attributes Sequence",
}

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def uid_problem(value: object) -> str:
    """Why ``value`` is not a UID (PS3.5 §9.1: digits and dots, at most 64 characters), or ""."""
    text = str(value)
    if len(text) > 64:
        return f"is {len(text)} characters long, over the 64 a UID may have"
    if "\x00" in text:
        return "contains a NUL character"
    if not _UID.fullmatch(text):
        return "is not made of digits and dots"
    return ""


def _invalid_uid_value(ds: Dataset) -> str:
    """The first UI element of ``ds`` (nested too) whose value is no UID, as a sentence; else ""."""
    for elem in ds.iterall():
        if elem.VR != "UI" or elem.value in (None, ""):
            continue
        for value in elem.value if elem.VM > 1 else [elem.value]:
            problem = uid_problem(value)
            if problem:
                return f"{elem.keyword or elem.tag} {problem}"
    return ""


@dataclass(frozen=True, slots=True)
class MppsEvent:
    """One N-CREATE / N-SET the SCP answered (``on_event`` gets these, accepted or not).

    ``dataset`` is the registry's own value of the instance at that moment (not a copy: a later N-SET
    makes a new dataset and never changes this one); read it, do not modify it.
    """

    operation: str  # "N-CREATE" | "N-SET"
    sop_instance_uid: str
    status: int  # the DIMSE status we answered
    pps_status: str  # PerformedProcedureStepStatus after the operation ("" if unknown)
    dataset: Dataset | None  # the instance after the operation; None when it was refused
    comment: str = ""


@dataclass(slots=True)
class MppsInstance:
    """A recorded MPPS SOP instance: its current attributes and every accepted request.

    The datasets here are values: an N-SET replaces ``dataset`` with a new one (sharing the elements it
    does not replace) and never modifies a dataset or element once recorded, so ``history`` entries and
    the datasets handed to ``on_event`` stay as they were without a deep copy of each (a CT study's
    N-SET references hundreds of images).
    """

    sop_instance_uid: str
    dataset: Dataset
    history: list[tuple[str, dt.datetime, Dataset]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.dataset.get("PerformedProcedureStepStatus", ""))


class MppsRegistry:
    """The SCP's state: MPPS instances by SOP Instance UID, guarded by a lock (threaded server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, MppsInstance] = {}

    def get(self, uid: str) -> MppsInstance | None:
        with self._lock:
            return self._instances.get(uid)

    def snapshot(self) -> dict[str, MppsInstance]:
        """A copy of the registry (instances are shared; do not mutate them)."""
        with self._lock:
            return dict(self._instances)

    def create(self, uid: str | None, attributes: Dataset) -> tuple[int, str]:
        """Apply an N-CREATE (PS3.4 F.7.2.1); returns (DIMSE status, error comment).

        The registry keeps ``attributes`` itself (the freshly decoded attribute list): the caller hands it
        over and must not modify it afterwards.
        """
        if not uid:
            return PROCESSING_FAILURE, "MPPS N-CREATE needs an Affected SOP Instance UID from the SCU"
        problem = uid_problem(uid)
        if problem:
            return INVALID_OBJECT_INSTANCE, f"the Affected SOP Instance UID {problem}"
        bad_value = _invalid_uid_value(attributes)
        if bad_value:
            return INVALID_ATTRIBUTE_VALUE, bad_value
        for keyword in _N_CREATE_TYPE_1:
            if keyword not in attributes:
                return MISSING_ATTRIBUTE, f"{keyword} is missing"
            value = attributes[keyword].value
            if value is None or value == "" or (keyword.endswith("Sequence") and len(value) == 0):
                return MISSING_ATTRIBUTE_VALUE, f"{keyword} is empty"
        status = str(attributes.PerformedProcedureStepStatus)
        if status != IN_PROGRESS:
            return INVALID_ATTRIBUTE_VALUE, f"an MPPS is created IN PROGRESS, not {status!r}"
        with self._lock:
            if uid in self._instances:
                return DUPLICATE_SOP_INSTANCE, f"MPPS {uid} already exists"
            instance = MppsInstance(uid, attributes)
            instance.history.append(("N-CREATE", dt.datetime.now(dt.UTC), attributes))
            self._instances[uid] = instance
        return SUCCESS, ""

    def set(self, uid: str | None, modifications: Dataset) -> tuple[int, str]:
        """Apply an N-SET (PS3.4 F.7.2.2); returns (DIMSE status, error comment).

        Like :meth:`create`, keeps ``modifications`` itself (in the history, its elements in the new dataset).
        """
        problem = uid_problem(uid or "")
        if problem:
            return INVALID_OBJECT_INSTANCE, f"the Requested SOP Instance UID {problem}"
        refused = [name for tag, name in _N_SET_NOT_ALLOWED.items() if tag in modifications]
        if refused:
            return INVALID_ATTRIBUTE_VALUE, f"{', '.join(refused)} may not be set by N-SET (PS3.4 Table F.7.2-1)"
        bad_value = _invalid_uid_value(modifications)
        if bad_value:
            return INVALID_ATTRIBUTE_VALUE, bad_value
        with self._lock:
            instance = self._instances.get(uid or "")
            if instance is None:
                return NO_SUCH_OBJECT_INSTANCE, f"no MPPS {uid}"
            if instance.status in FINAL_STATUSES:
                return PROCESSING_FAILURE, f"MPPS {uid} is {instance.status} and may no longer be modified"
            new_status = str(modifications.get("PerformedProcedureStepStatus", instance.status) or "")
            if new_status not in STATUSES:
                return INVALID_ATTRIBUTE_VALUE, f"{new_status!r} is not a Performed Procedure Step Status"
            merged = _merged(instance.dataset, modifications, new_status)
            problem = _final_state_problem(merged) if new_status in FINAL_STATUSES else ""
            if problem:
                return PROCESSING_FAILURE, problem
            instance.dataset = merged
            instance.history.append(("N-SET", dt.datetime.now(dt.UTC), modifications))
        return SUCCESS, ""


def _merged(current: Dataset, modifications: Dataset, status: str) -> Dataset:
    """A new dataset: ``current`` with the attributes of ``modifications`` replacing its own (an N-SET replaces
    whole attributes, sequences too) and ``status``. Neither input is modified: the elements are shared, so
    the status is a new element rather than an assignment to the shared one."""
    merged = Dataset(dict(current.items()))
    for elem in modifications:
        merged[elem.tag] = elem
    merged[0x00400252] = DataElement(0x00400252, "CS", status)  # Performed Procedure Step Status
    return merged


def _final_state_problem(ds: Dataset) -> str:
    """PS3.4 F.7.2.2.2 final state requirements not met by ``ds`` ("" when all are met)."""
    for keyword in ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"):
        if not ds.get(keyword):
            return f"{keyword} is required to end an MPPS"
    if ds.PerformedProcedureStepStatus == "COMPLETED" and not ds.get("PerformedSeriesSequence"):
        return "a COMPLETED MPPS must list at least one performed series"
    return ""


def _status_dataset(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = clip(comment)  # LO
    return ds


def _notify(on_event: Callable[[MppsEvent], None] | None, event: MppsEvent) -> None:
    if on_event is None:
        return
    try:
        on_event(event)
    except Exception:  # a listener's bug must not change what the modality is told
        logger.exception("MPPS on_event callback failed for %s %s", event.operation, event.sop_instance_uid)


def _decode(event: Event, attr: str) -> Dataset | None:
    try:
        ds: Dataset = getattr(event, attr)
        _ = list(ds)  # decode every element now
        return ds
    except Exception:  # pydicom raises various errors for a malformed dataset
        logger.exception("undecodable MPPS %s", attr)
        return None


def handle_n_create(
    event: Event, registry: MppsRegistry, on_event: Callable[[MppsEvent], None] | None
) -> tuple[Dataset, Dataset | None]:
    """EVT_N_CREATE for the MPPS SOP class (PS3.4 F.7.2.1): record an IN PROGRESS instance."""
    uid = event.request.AffectedSOPInstanceUID
    attributes = _decode(event, "attribute_list")
    if attributes is None:
        status, comment = PROCESSING_FAILURE, "undecodable attribute list"
    else:
        status, comment = registry.create(str(uid) if uid else None, attributes)
    instance = registry.get(str(uid)) if uid and status == SUCCESS else None
    _notify(
        on_event,
        MppsEvent(
            "N-CREATE",
            str(uid or ""),
            status,
            instance.status if instance else "",
            instance.dataset if instance else None,
            comment,
        ),
    )
    return _status_dataset(status, comment), None


def handle_n_set(
    event: Event, registry: MppsRegistry, on_event: Callable[[MppsEvent], None] | None
) -> tuple[Dataset, Dataset | None]:
    """EVT_N_SET for the MPPS SOP class (PS3.4 F.7.2.2): update, complete or discontinue."""
    uid = str(event.request.RequestedSOPInstanceUID or "")
    modifications = _decode(event, "modification_list")
    if modifications is None:
        status, comment = PROCESSING_FAILURE, "undecodable modification list"
    else:
        status, comment = registry.set(uid, modifications)
    instance = registry.get(uid) if status == SUCCESS else None
    _notify(
        on_event,
        MppsEvent(
            "N-SET",
            uid,
            status,
            instance.status if instance else "",
            instance.dataset if instance else None,
            comment,
        ),
    )
    return _status_dataset(status, comment), None



class MppsScp(PynetdicomScp):
    """Our MPPS SCP on ``host:port`` (port 0: any free port, read ``.port``); answers C-ECHO too.

    ``instances`` maps SOP Instance UID to :class:`MppsInstance`; ``on_event`` is called (from
    the association thread) after every N-CREATE / N-SET with an :class:`MppsEvent`.
    """

    default_ae_title = "YEETER_MPPS"

    def __init__(
        self,
        *,
        ae_title: str = "YEETER_MPPS",
        host: str = "127.0.0.1",
        port: int = 0,
        on_event: Callable[[MppsEvent], None] | None = None,
        **limits: float,
    ) -> None:
        """``limits``: ``artim_timeout``, ``network_timeout``, ``dimse_timeout``, ``max_associations``,
        ``max_per_peer`` (see :class:`~simulations.transport.dimse.common.PynetdicomScp`)."""
        super().__init__(ae_title=ae_title, host=host, port=port, **limits)  # type: ignore[arg-type]
        self.on_event = on_event
        self.registry = MppsRegistry()

    @property
    def instances(self) -> dict[str, MppsInstance]:
        return self.registry.snapshot()

    def supported_contexts(self) -> list[str]:
        return [ModalityPerformedProcedureStep, Verification]

    def event_handlers(self) -> list[tuple]:
        return [
            (evt.EVT_N_CREATE, handle_n_create, [self.registry, self.on_event]),
            (evt.EVT_N_SET, handle_n_set, [self.registry, self.on_event]),
        ]


# --- SCU ----------------------------------------------------------------------------------------


def _checked(peer: DicomPeer, operation: str, status: Dataset) -> int:
    if "Status" not in status:
        raise SendError(f"{peer} sent no valid {operation} response (timeout, abort or bad PDU)")
    code = int(status.Status)
    if code_to_category(code) in ("Success", "Warning"):
        return code
    comment = status.get("ErrorComment", "")
    raise SendError(
        f"{peer} refused MPPS {operation} with status 0x{code:04X}{': ' + comment if comment else ''}",
        permanent=code != RESOURCE_LIMITATION,
        status=code,
    )


def mpps_create(peer: DicomPeer, ds: Dataset, *, mpps_uid: str, timeout: float | None = None) -> int:
    """N-CREATE the MPPS ``mpps_uid`` with attribute list ``ds`` (PS3.4 F.7.2.1, IHE RAD-6).

    Returns the DIMSE status (0x0000 or a warning); raises :class:`SendError` with ``.status``
    on a failure status, and without when the peer is absent or rejects/aborts.
    """
    return _request(peer, "N-CREATE", ds, mpps_uid, timeout)


def mpps_set(peer: DicomPeer, mpps_uid: str, ds: Dataset, *, timeout: float | None = None) -> int:
    """N-SET modification list ``ds`` on MPPS ``mpps_uid`` (PS3.4 F.7.2.2, IHE RAD-7).

    Returns the DIMSE status (0x0000 or a warning); raises :class:`SendError` like
    :func:`mpps_create`.
    """
    return _request(peer, "N-SET", ds, mpps_uid, timeout)


def _request(peer: DicomPeer, operation: Literal["N-CREATE", "N-SET"], ds: Dataset, mpps_uid: str,
             timeout: float | None) -> int:
    """One N-CREATE or N-SET of MPPS ``mpps_uid`` on an association of its own; the checked status."""
    assoc = associate(peer, [(ModalityPerformedProcedureStep, None)], purpose="MPPS", timeout=timeout)
    try:
        send = assoc.send_n_create if operation == "N-CREATE" else assoc.send_n_set
        status, _ = send(ds, ModalityPerformedProcedureStep, mpps_uid)
        return _checked(peer, operation, status)
    finally:
        if assoc.is_established:
            assoc.release()
