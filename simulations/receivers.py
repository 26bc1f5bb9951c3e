"""The built-in receivers: an MLLP listener, a Storage SCP (which also answers storage commitment)
with a Study Root C-FIND SCP over what it received, a Modality Worklist SCP over the worklist
entries runs publish, and an MPPS SCP.

Together they behave as a small RIS (:class:`BuiltinRis`): orders reaching the MLLP listener, from
Yeeter or any other sender, become worklist items (:mod:`simulations.ris`), and MPPS N-CREATE /
N-SET move an item's status, a completed or discontinued step leaving the worklist.

``runsim`` with no endpoint flags starts them on loopback and runs the whole chain against them, so
every message really crosses the network; ``manage.py serve`` starts them for external tools.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from pydicom import Dataset

from simulations.endpoints import EndpointSet, HL7Target
from simulations.models import WorklistEntry
from simulations.transport.dimse.common import DicomPeer
from simulations.ris import OrderError, order_action
from simulations.transport.dimse.mpps import MppsEvent, MppsScp
from simulations.transport.dimse.query import StudyRootQueryScp
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.worklist import WorklistScp
from simulations.transport.mllp_server import MllpServer, MllpServerThread, ReceivedMessage

logger = logging.getLogger(__name__)


# What the worklist serves (PS3.4 K.6: modalities query for steps still to perform): scheduled and
# started steps; completed and discontinued ones have left it. SPS Status (0040,0020) defined terms
# (PS3.3 C.4.10) have no "IN PROGRESS": a step whose MPPS is in progress is STARTED.
_SERVED = {WorklistEntry.Status.SCHEDULED: "SCHEDULED", WorklistEntry.Status.IN_PROGRESS: "STARTED"}


def scheduled_worklist_items() -> Iterator[Dataset]:
    """What the built-in MWL SCP serves: every entry SCHEDULED or IN PROGRESS, its SPS Status set to
    match. Runs in the SCP's association thread, hence its own DB connection hygiene."""
    close_old_connections()
    try:
        rows = list(WorklistEntry.objects.filter(status__in=list(_SERVED))
                    .order_by("scheduled_at", "accession_number").values_list("status", "dataset"))
    finally:
        close_old_connections()
    for status, data in rows:
        ds = Dataset.from_json(data)
        for sps in ds.get("ScheduledProcedureStepSequence") or []:
            sps.ScheduledProcedureStepStatus = _SERVED[status]
        yield ds


# A run publishing its own item (SEND_DMWL) and the RIS scheduling the same order run in one process
# (the built-in receivers start beside the runner): this lock makes "look, then insert" atomic between
# them, so neither database isolation level nor timing can leave two items for one accession.
_publish_lock = threading.Lock()


def publish_worklist_entry(*, accession_number: str, dataset: Dataset, modality: str, station_ae_title: str,
                           scheduled_at: dt.datetime | None, patient: Any = None,
                           replace: bool = True) -> WorklistEntry | None:
    """Create or update the one worklist entry of ``accession_number`` (a RIS has one item per order).

    ``replace=False`` (a new order for an accession already scheduled, e.g. by a run that published
    its own item) leaves an existing entry alone, so a run's own item always wins over the RIS's
    mapping of the same order. Duplicates (from another process) are folded into one.
    """
    when = scheduled_at or timezone.localtime().replace(tzinfo=None)
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    fields = {"modality": modality[:2], "station_ae_title": station_ae_title[:16], "scheduled_at": when,
              "status": WorklistEntry.Status.SCHEDULED, "dataset": dataset.to_json_dict()}
    with _publish_lock, transaction.atomic():
        existing = list(WorklistEntry.objects.filter(accession_number=accession_number).order_by("pk"))
        if existing and not replace:
            return None
        if existing:
            entry = existing[0]
            WorklistEntry.objects.filter(pk__in=[e.pk for e in existing[1:]]).delete()
            for key, value in fields.items():
                setattr(entry, key, value)
            if patient is not None:
                entry.patient = patient
            entry.save()
            return entry
        return WorklistEntry.objects.create(accession_number=accession_number, patient=patient, **fields)


_MPPS_STATUS = {"IN PROGRESS": WorklistEntry.Status.IN_PROGRESS, "COMPLETED": WorklistEntry.Status.COMPLETED,
                "DISCONTINUED": WorklistEntry.Status.DISCONTINUED}


class BuiltinRis:
    """Orders over MLLP -> worklist entries; MPPS -> their status (IHE RAD-4/RAD-5, RAD-6/RAD-7).

    :meth:`on_message` is the MLLP listener's callback: it must not block its event loop, so orders
    are queued and scheduled by a worker thread. :meth:`on_mpps` runs in the MPPS SCP's association
    thread. Neither raises: a bad order is logged with the field at fault (its sender already has
    its ACK), and ``problems`` keeps the last ones for whoever runs ``serve``.
    """

    def __init__(self, *, station_ae_titles: dict[str, str] | None = None) -> None:
        self.station_ae_titles = dict(station_ae_titles or {})
        self.problems: list[str] = []
        self.scheduled = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="builtin-ris", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def wait_idle(self) -> None:
        """Return once every order received so far is scheduled (tests, a clean stop)."""
        self._queue.join()

    def on_message(self, message: ReceivedMessage) -> None:
        if message.ack_code == "AA" and message.message_type.startswith("ORM"):
            self._queue.put(message.raw)

    def _work(self) -> None:
        while True:
            raw = self._queue.get()
            try:
                if raw is None:
                    return
                self.schedule(raw)
            except Exception:  # noqa: BLE001 - one odd order must not stop the RIS scheduling the next
                logger.exception("built-in RIS: the order could not be scheduled")
                self._problem("an order could not be scheduled (see the log)")
            finally:
                self._queue.task_done()

    def schedule(self, raw: str) -> None:
        """Apply one order to the worklist (see :func:`simulations.ris.order_action`)."""
        try:
            action = order_action(raw, station_ae_titles=self.station_ae_titles)
        except OrderError as exc:
            self._problem(f"order not scheduled: {exc}")
            return
        if action is None:
            return
        close_old_connections()
        try:
            if action.operation in ("create", "replace"):
                publish_worklist_entry(accession_number=action.accession_number, dataset=action.item,
                                       modality=action.modality, scheduled_at=action.scheduled_at,
                                       station_ae_title=str(action.item.ScheduledProcedureStepSequence[0]
                                                            .ScheduledStationAETitle or ""),
                                       replace=action.operation == "replace")
                self.scheduled += 1
            else:
                WorklistEntry.objects.filter(accession_number=action.accession_number).update(status=action.status)
        except Exception:  # noqa: BLE001 - a database failure must not kill the RIS thread
            logger.exception("built-in RIS: could not apply the order for accession %s", action.accession_number)
        finally:
            close_old_connections()

    def on_mpps(self, event: MppsEvent) -> None:
        """An accepted N-CREATE/N-SET moves the status of the entries its Scheduled Step Attributes name."""
        status = _MPPS_STATUS.get(event.pps_status)
        if event.status != 0x0000 or event.dataset is None or status is None:
            return
        accessions = {str(item.get("AccessionNumber", "") or "")
                      for item in event.dataset.get("ScheduledStepAttributesSequence") or []} - {""}
        if not accessions:
            return
        close_old_connections()
        try:
            WorklistEntry.objects.filter(accession_number__in=accessions).update(status=status)
        except Exception:  # noqa: BLE001 - the modality already has its answer; log and go on
            logger.exception("built-in RIS: could not move the worklist status for MPPS %s", event.sop_instance_uid)
        finally:
            close_old_connections()

    def _problem(self, text: str) -> None:
        logger.warning("built-in RIS: %s", text)
        self.problems = [*self.problems[-99:], text]


@dataclass(frozen=True)
class ReceiverPorts:
    hl7: int = 0
    storage: int = 0
    mwl: int = 0
    mpps: int = 0
    query: int = 0


ALL_KINDS = ("hl7", "storage", "mwl", "mpps")


def _limits() -> tuple[dict, dict]:
    """(DICOM SCP options, MLLP listener options) from ``settings.RECEIVERS``."""
    limits = settings.RECEIVERS
    dicom = {"artim_timeout": limits["ARTIM_TIMEOUT"], "network_timeout": limits["IDLE_TIMEOUT"],
             "max_associations": limits["MAX_ASSOCIATIONS"], "max_per_peer": limits["MAX_PER_PEER"]}
    mllp = {"max_message_bytes": limits["MLLP_MAX_MESSAGE_BYTES"], "buffer_budget": limits["MLLP_BUFFER_BUDGET"],
            "idle_timeout": limits["MLLP_IDLE_TIMEOUT"]}
    if limits["MLLP_VERSIONS"]:
        mllp["versions"] = frozenset(limits["MLLP_VERSIONS"])
    if limits["MLLP_MESSAGE_TYPES"]:
        mllp["message_types"] = frozenset(limits["MLLP_MESSAGE_TYPES"])
    return dicom, mllp


class BuiltinReceivers:
    """Start/stop the receivers of ``kinds`` together (a context manager); ports 0 pick free ones."""

    def __init__(self, *, storage_dir: Path, host: str = "127.0.0.1", ports: ReceiverPorts = ReceiverPorts(),
                 ae_prefix: str = "YEETER", kinds: tuple[str, ...] = ALL_KINDS,
                 station_ae_titles: dict[str, str] | None = None, commitment_reply: str = "same",
                 commitment_peers: dict[str, int] | None = None) -> None:
        unknown = set(kinds) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"no built-in receiver for {', '.join(sorted(unknown))}")
        self.host = host
        self.kinds = tuple(k for k in ALL_KINDS if k in kinds)
        self.storage_dir = storage_dir
        dicom, mllp = _limits()
        self.ris = BuiltinRis(station_ae_titles=station_ae_titles)
        self.mllp = MllpServer(host, ports.hl7, application=f"{ae_prefix}_RIS", facility=f"{ae_prefix}_HOSP",
                               on_message=self.ris.on_message if "mwl" in self.kinds else None, **mllp)
        self.storage = StorageScp(ae_title=f"{ae_prefix}_PACS", host=host, port=ports.storage,
                                  storage_dir=storage_dir, duplicates=settings.RECEIVERS["STORE_DUPLICATES"],
                                  durable=settings.RECEIVERS["STORE_FSYNC"],
                                  commitment_reply=commitment_reply,  # type: ignore[arg-type]
                                  commitment_peers=commitment_peers, **dicom)
        self.mwl = WorklistScp(provider=scheduled_worklist_items, ae_title=f"{ae_prefix}_MWL", host=host,
                               port=ports.mwl, **dicom)
        self.mpps = MppsScp(ae_title=f"{ae_prefix}_MPPS", host=host, port=ports.mpps,
                            on_event=self.ris.on_mpps if "mwl" in self.kinds else None, **dicom)
        # What the Storage SCP received, queryable (Study Root C-FIND): VERIFY_PACS against the built-ins.
        self.query = StudyRootQueryScp(storage_dir=storage_dir, ae_title=f"{ae_prefix}_QR", host=host,
                                       port=ports.query, **dicom)
        self._mllp_thread: MllpServerThread | None = None

    def _dicom_servers(self) -> list:
        return [server for kind, server in (("storage", self.storage), ("storage", self.query), ("mwl", self.mwl),
                                            ("mpps", self.mpps)) if kind in self.kinds]

    def start(self) -> "BuiltinReceivers":
        if "storage" in self.kinds:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.ris.start()
            if "hl7" in self.kinds:
                self._mllp_thread = self.mllp.start_in_thread()
            for server in self._dicom_servers():
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self._dicom_servers()):
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stopping must reach every receiver
                logger.warning("could not stop %s cleanly", type(server).__name__, exc_info=True)
        if self._mllp_thread is not None:
            self._mllp_thread.stop()
            self._mllp_thread = None
        self.ris.stop()

    def __enter__(self) -> "BuiltinReceivers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def hl7_port(self) -> int:
        assert self._mllp_thread is not None
        return self._mllp_thread.port

    def endpoints(self, *, calling_ae_title: str = "YEETER") -> EndpointSet:
        """Targets for a run against the running receivers (commitment goes to the Storage SCP)."""
        by_kind: dict = {}
        if "hl7" in self.kinds:
            by_kind["hl7"] = HL7Target(self.host, self.hl7_port, receiving_application=self.mllp.application,
                                       receiving_facility=self.mllp.facility)
        if "storage" in self.kinds:
            by_kind["storage"] = by_kind["commitment"] = DicomPeer(self.host, self.storage.port,
                                                                   self.storage.ae_title, calling_ae_title)
            by_kind["query"] = DicomPeer(self.host, self.query.port, self.query.ae_title, calling_ae_title)
        for kind, server in (("mwl", self.mwl), ("mpps", self.mpps)):
            if kind in self.kinds:
                by_kind[kind] = DicomPeer(self.host, server.port, server.ae_title, calling_ae_title)
        return EndpointSet(by_kind=by_kind, builtin_worklist="mwl" in self.kinds)

    def _commitment_note(self) -> str:
        if self.storage.commitment_reply != "new":
            return ""
        peers = ", ".join(f"{aet}:{port}" for aet, port in sorted(self.storage.commitment_peers.items()))
        return f" (commitment reports on a new association to {peers or 'nobody'})"

    def describe(self) -> list[str]:
        lines = {
            "hl7": lambda: f"HL7 MLLP listener      {self.host}:{self.hl7_port}",
            "storage": lambda: (f"Storage SCP (+commit)  {self.storage.ae_title}@{self.host}:{self.storage.port} "
                                f"-> {self.storage_dir}" + self._commitment_note()),
            "query": lambda: f"Query SCP (Study Root) {self.query.ae_title}@{self.host}:{self.query.port}",
            "mwl": lambda: f"Modality Worklist SCP  {self.mwl.ae_title}@{self.host}:{self.mwl.port}",
            "mpps": lambda: f"MPPS SCP               {self.mpps.ae_title}@{self.host}:{self.mpps.port}",
        }
        kinds = [k for kind in self.kinds for k in ((kind, "query") if kind == "storage" else (kind,))]
        return [lines[kind]() for kind in kinds]
