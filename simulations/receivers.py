"""The built-in receivers: an MLLP listener, a Storage SCP (which also answers storage commitment)
with a Study Root C-FIND SCP over what it received, a Modality Worklist SCP over the worklist
entries runs publish, and an MPPS SCP.

``runsim`` with no endpoint flags starts them on loopback and runs the whole chain against them, so
every message really crosses the network; ``manage.py serve`` starts them for external tools.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import close_old_connections
from pydicom import Dataset

from simulations.endpoints import EndpointSet, HL7Target
from simulations.models import WorklistEntry
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.mpps import MppsScp
from simulations.transport.dimse.query import StudyRootQueryScp
from simulations.transport.dimse.storage_scp import StorageScp
from simulations.transport.dimse.worklist import WorklistScp
from simulations.transport.mllp_server import MllpServer, MllpServerThread

logger = logging.getLogger(__name__)


def scheduled_worklist_items() -> Iterator[Dataset]:
    """What the built-in MWL SCP serves: every entry still SCHEDULED (PS3.4 K.6: modalities query
    for steps to perform). Runs in the SCP's association thread, hence its own DB connection hygiene."""
    close_old_connections()
    try:
        datasets = list(WorklistEntry.objects.filter(status=WorklistEntry.Status.SCHEDULED)
                        .order_by("scheduled_at", "accession_number").values_list("dataset", flat=True))
    finally:
        close_old_connections()
    for data in datasets:
        yield Dataset.from_json(data)


@dataclass(frozen=True)
class ReceiverPorts:
    hl7: int = 0
    storage: int = 0
    mwl: int = 0
    mpps: int = 0
    query: int = 0


ALL_KINDS = ("hl7", "storage", "mwl", "mpps")


class BuiltinReceivers:
    """Start/stop the receivers of ``kinds`` together (a context manager); ports 0 pick free ones."""

    def __init__(self, *, storage_dir: Path, host: str = "127.0.0.1", ports: ReceiverPorts = ReceiverPorts(),
                 ae_prefix: str = "YEETER", kinds: tuple[str, ...] = ALL_KINDS) -> None:
        unknown = set(kinds) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"no built-in receiver for {', '.join(sorted(unknown))}")
        self.host = host
        self.kinds = tuple(k for k in ALL_KINDS if k in kinds)
        self.storage_dir = storage_dir
        self.mllp = MllpServer(host, ports.hl7, application=f"{ae_prefix}_RIS", facility=f"{ae_prefix}_HOSP")
        self.storage = StorageScp(ae_title=f"{ae_prefix}_PACS", host=host, port=ports.storage,
                                  storage_dir=storage_dir)
        self.mwl = WorklistScp(provider=scheduled_worklist_items, ae_title=f"{ae_prefix}_MWL", host=host,
                               port=ports.mwl)
        self.mpps = MppsScp(ae_title=f"{ae_prefix}_MPPS", host=host, port=ports.mpps)
        # What the Storage SCP received, queryable (Study Root C-FIND): VERIFY_PACS against the built-ins.
        self.query = StudyRootQueryScp(storage_dir=storage_dir, ae_title=f"{ae_prefix}_QR", host=host,
                                       port=ports.query)
        self._mllp_thread: MllpServerThread | None = None

    def _dicom_servers(self) -> list:
        return [server for kind, server in (("storage", self.storage), ("storage", self.query), ("mwl", self.mwl),
                                            ("mpps", self.mpps)) if kind in self.kinds]

    def start(self) -> "BuiltinReceivers":
        if "storage" in self.kinds:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
        try:
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

    def describe(self) -> list[str]:
        lines = {
            "hl7": lambda: f"HL7 MLLP listener      {self.host}:{self.hl7_port}",
            "storage": lambda: (f"Storage SCP (+commit)  {self.storage.ae_title}@{self.host}:{self.storage.port} "
                                f"-> {self.storage_dir}"),
            "query": lambda: f"Query SCP (Study Root) {self.query.ae_title}@{self.host}:{self.query.port}",
            "mwl": lambda: f"Modality Worklist SCP  {self.mwl.ae_title}@{self.host}:{self.mwl.port}",
            "mpps": lambda: f"MPPS SCP               {self.mpps.ae_title}@{self.host}:{self.mpps.port}",
        }
        kinds = [k for kind in self.kinds for k in ((kind, "query") if kind == "storage" else (kind,))]
        return [lines[kind]() for kind in kinds]
