"""The built-in Storage SCP (PS3.4 Annex B) that also answers C-ECHO (Annex A) and Storage Commitment (Annex J).

Why not ``AE.start_server``: pynetdicom's acceptor hands every PDU through a DUL thread, queues
and a reactor loop that sleeps 1 ms per turn, reads sockets 4 KiB at a time and copies each
data set several times; measured here it stores ≈250 instances/s where dcmtk ``storescp``
stores ≈1,000-1,700/s. The simulator's own PACS must keep up with real modalities, so this SCP
runs the DICOM Upper Layer itself, one thread per association:

* A-ASSOCIATE-RQ/AC are decoded/encoded with pynetdicom's ``pdu`` classes;
* P-DATA-TF PDUs are read with ``recv_into`` into one buffer per PDU; C-STORE data set PDVs
  are written, as ``memoryview`` slices of those buffers, straight to a spool file that starts
  with the preamble and a File Meta group we encode (PS3.10 §7.1) — never decoded, never joined,
  disk writes overlapping the transfer (:mod:`.spool`: with ``O_DIRECT`` when every file is flushed
  anyway, past the page cache);
* the spool file has a name no other process or host can pick (host, process id, a random UUID;
  opened with ``O_EXCL``), so several SCPs may share one ``storage_dir``; once the last PDV is in,
  it is flushed to disk (``fsync``) and checked whole (:mod:`.integrity`: every element header
  walked, Pixel Data against Rows × Columns…, the SOP Instance UID against the command's) — a
  truncated or mislabelled data set is refused (0xC000 / 0xA900) and nothing of it is kept;
* the checked file is then moved into place atomically as ``storage_dir/<StudyUID>/<SOPInstanceUID>.dcm``
  (a hard link for keep-first/reject, so two SCPs receiving the same instance cannot both win;
  ``rename`` for keep-last). A SOP Instance UID received again follows ``duplicates`` (see
  :class:`StorageScp`) and is never overwritten silently.

Hostile or careless peers (PS3.8 §9.1.5 ARTIM): a connection that sends no A-ASSOCIATE-RQ within
``artim_timeout`` seconds is closed; an established association silent for ``network_timeout``
seconds is aborted; at most ``max_associations`` associations are served and at most
``max_per_peer`` connections are held per peer address — beyond that the peer gets A-ASSOCIATE-RJ
(transient, local limit exceeded) and beyond twice that the connection is closed at once.

Service handlers stay plain ``handle_<op>(request)`` callables bound as data in
:attr:`StorageScp.handlers`, answering with DICOM status codes; nothing crosses the wire as an
exception.

With ``ssl_context`` (a server context, :func:`simulations.transport.tls.server_context`) every
accepted connection runs the TLS handshake in its association thread before anything else
(PS3.15 Annex B); a peer whose handshake fails is dropped and logged.

Size (over the ~400 lines of simulations/): the receiving side of C-STORE as one unit — the spool that
writes each data set atomically under a unique name, the integrity checks, the duplicate policy, the
association limits and Storage Commitment answered on the same or a new association all decide the one
status an instance gets; the PDU and DIMSE encoding it shares with the C-STORE SCU is in :mod:`.upper_layer`.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal

from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    ALL_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    AllStoragePresentationContexts,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    Verification,
)

from generators.vr import clip
from simulations.processes import pid_alive
from simulations.transport.dimse.commitment import send_commitment_report
from simulations.transport.dimse.commitment_info import (
    FAILURE_CLASS_INSTANCE_CONFLICT,
    FAILURE_NO_SUCH_OBJECT,
    CommitmentReport,
    InvalidUid,
    parse_commitment_request,
)
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.integrity import TRUNCATED, check_dataset
from simulations.transport.dimse.spool import SpooledDataSet
from simulations.transport.dimse.upper_layer import (
    ABORT,
    APPLICATION_CONTEXT,
    ASSOCIATE_RQ,
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    DUPLICATE_SOP_INSTANCE,
    ELEMENTS_DISCARDED,
    INVALID_ATTRIBUTE_VALUE,
    INVALID_OBJECT_INSTANCE,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION,
    NO_SUCH_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    P_DATA_TF,
    PROCESSING_FAILURE,
    RELEASE_RP,
    RELEASE_RQ_TYPE,
    SUCCESS,
    UNRECOGNIZED_OPERATION,
    PduStream,
    decode_associate,
    dimse_buffers,
    encode_associate,
    encode_command,
    fragment_size,
    iter_pdvs,
    parse_command,
    pdu_name,
    peer_max_length,
    presentation_context,
    reject_pdu,
)
from simulations.transport.errors import SendError

LOGGER = logging.getLogger(__name__)

_MAX_RQ_BYTES = 256 * 1024
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# The host part of spool names: safe in a file name, distinct between hosts sharing a folder
_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"
_UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
_STORAGE_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
# The data set is written as received, so any transfer syntax pynetdicom knows is acceptable.
_STORAGE_SYNTAXES = frozenset(str(ts) for ts in ALL_TRANSFER_SYNTAXES)

CommitmentReply = Literal["same", "new"]
DuplicatePolicy = Literal["keep-first", "keep-last", "reject"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = ("keep-first", "keep-last", "reject")
_DUPLICATE_OUTCOMES = {
    "kept-first": "the copy received first is kept and this one discarded",
    "replaced": "this copy replaced the earlier one",
    "rejected": "this copy is refused",
}


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance the SCP wrote to disk (what the runner shows as "received")."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    path: Path
    calling_ae_title: str
    transfer_syntax_uid: str
    size: int
    received_at: dt.datetime
    duplicate: str = ""  # "", or what the policy did with an earlier copy: "replaced", "kept-first", "rejected"


@dataclass(frozen=True, slots=True)
class DimseRequest:
    """One received DIMSE request, the argument of every ``handle_<op>`` (the pynetdicom ``event`` role).

    ``dataset`` is the encoded data set as it arrived: PDV fragments, views into PDU buffers;
    for a C-STORE it is empty and ``spooled`` holds the data set already written to disk.
    """

    command: dict[int, int | str]
    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    calling_ae_title: str
    address: str
    dataset: list[memoryview]
    spooled: "SpooledDataSet | None" = None

    def dataset_bytes(self) -> bytes:
        return b"".join(self.dataset)


class StorageScp:
    """Storage SCP + Verification SCP + Storage Commitment Push Model SCP on one AE.

    ``commitment_reply`` chooses where the N-EVENT-REPORT goes (PS3.4 J.3.3): ``"same"`` sends
    it on the association that carried the N-ACTION right after the N-ACTION-RSP (as dcm4che and
    Orthanc can), ``"new"`` opens an association back to the requestor, whose port is looked up
    by calling AE title in ``commitment_peers`` (the host is the requestor's address).
    ``history`` bounds the in-memory record of stored instances. Any called AE title is
    accepted (as dcmtk ``storescp`` does). ``ssl_context`` makes it a TLS listener (see the
    module docstring); a report sent back on a new association is then still plain TCP.

    ``duplicates`` is what happens when a SOP Instance UID already on disk arrives again (PS3.4
    B.2.2 leaves it to the SCP; a real PACS test case):

    * ``"keep-first"`` (default, what dcm4chee-arc's default overwrite policy and Orthanc's
      ``OverwriteInstances: false`` do): the file received first stays, the new data set is
      discarded, the answer is Warning 0xB006 (Elements Discarded) with an Error Comment saying so;
    * ``"keep-last"``: the new file replaces the earlier one atomically, the answer is Success;
    * ``"reject"``: the new data set is refused with 0x0111 (Duplicate SOP Instance, PS3.7 C.5.6).

    Every duplicate is logged as a warning and recorded (:meth:`duplicates`, ``on_duplicate``).
    ``durable`` flushes each file to disk before it is moved into place and answered.
    ``artim_timeout``, ``network_timeout``, ``max_associations`` and ``max_per_peer`` bound what
    silent or greedy peers can hold (see the module docstring).
    """

    def __init__(
        self,
        *,
        storage_dir: Path,
        ae_title: str = "YEETER_SCP",
        host: str = "127.0.0.1",
        port: int = 0,
        on_stored: Callable[[StoredInstance], None] | None = None,
        history: int = 100_000,
        commitment_reply: CommitmentReply = "same",
        commitment_peers: dict[str, int] | None = None,
        max_pdu: int = 1024 * 1024,
        network_timeout: float = 60.0,
        max_associations: int = 64,
        ssl_context: ssl.SSLContext | None = None,
        artim_timeout: float = 10.0,
        max_per_peer: int = 32,
        duplicates: DuplicatePolicy = "keep-first",
        on_duplicate: Callable[[StoredInstance], None] | None = None,
        durable: bool = True,
    ) -> None:
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}")
        self.storage_dir = Path(storage_dir)
        self.artim_timeout = artim_timeout
        self.max_per_peer = max_per_peer
        self.duplicate_policy: DuplicatePolicy = duplicates
        self.on_duplicate = on_duplicate
        self.durable = durable
        self.ssl_context = ssl_context
        self.ae_title = ae_title
        self.host = host
        self._requested_port = port
        self.on_stored = on_stored
        self.history = history
        self.commitment_reply: CommitmentReply = commitment_reply
        self.commitment_peers = dict(commitment_peers or {})
        self.max_pdu = max_pdu
        self.network_timeout = network_timeout
        self.max_associations = max_associations
        # DIMSE Command Field -> handler (PS3.7 §E.1); each returns a status code
        self.handlers: dict[int, Callable[[DimseRequest], int | tuple[int, str]]] = {
            0x0001: self.handle_store,
            0x0030: handle_echo,
        }
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sessions: set[_Association] = set()
        self._stored: OrderedDict[str, StoredInstance] = OrderedDict()
        self._duplicates: list[StoredInstance] = []
        self._lock = threading.Lock()
        # Incoming data sets are spooled beside the studies (same file system: renaming is free)
        self.spool_dir = self.storage_dir / ".incoming"

    # -- lifecycle --

    def start(self) -> None:
        """Listen on ``host:port`` and serve in background threads; ``port`` is known afterwards."""
        if self._listener is not None:
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_orphans()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY from the listening socket on Linux; PduStream sets
        # it again on each accepted socket for other systems.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((self.host, self._requested_port))
        listener.listen(64)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"storage-scp-{self.port}", daemon=True)
        self._acceptor.start()

    def _sweep_orphans(self) -> None:
        """Remove spool files left by SCP processes of this host that died mid-transfer (``kill -9``).

        The name says which host and process wrote a file: only this host's files whose process is
        gone are removed, never another host's nor a living process's.
        """
        for path in self.spool_dir.glob(f"{_HOST}-*.part"):
            pid_text = path.name[len(_HOST) + 1 :].split("-", 1)[0]
            if not pid_text.isdigit() or pid_alive(int(pid_text)):
                continue
            try:
                path.unlink()
                LOGGER.info("removed %s, left by a process that is gone", path)
            except FileNotFoundError:
                pass  # another SCP starting at the same time swept it first
            except OSError as exc:
                LOGGER.warning("cannot remove the orphaned spool file %s: %s", path, exc)

    def stop(self) -> None:
        """Stop listening and abort associations still open."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass  # not connected: close() below is enough
        listener.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.wire.abort(source=2)
        for session in sessions:
            session.thread.join(timeout=5)

    def __enter__(self) -> "StorageScp":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``port=0``)."""
        if self._listener is None:
            raise RuntimeError("the Storage SCP is not started")
        return int(self._listener.getsockname()[1])

    @property
    def peer(self) -> DicomPeer:
        """How an SCU reaches this SCP."""
        return DicomPeer(host=self.host, port=self.port, ae_title=self.ae_title)

    # -- what was received --

    def stored(self) -> list[StoredInstance]:
        """The instances stored so far (oldest first, at most ``history``)."""
        with self._lock:
            return list(self._stored.values())

    def find(self, sop_instance_uid: str) -> StoredInstance | None:
        """The stored instance with that SOP Instance UID, if we have it on record."""
        with self._lock:
            return self._stored.get(sop_instance_uid)

    def duplicates(self) -> list[StoredInstance]:
        """Every SOP Instance UID received again, with what the policy did (``duplicate``), oldest first
        (at most ``history``)."""
        with self._lock:
            return list(self._duplicates)

    # -- handlers --

    def spool(self, sop_class: str, sop_instance: str, transfer_syntax: str, calling_ae_title: str) -> SpooledDataSet:
        """Open the spool file for an incoming C-STORE data set (called when its command arrives)."""
        meta = encode_file_meta(sop_class, sop_instance, transfer_syntax, source_ae_title=calling_ae_title)
        # Unique across hosts and processes sharing the folder, and within this one (PS3.10 says
        # nothing here: two SCPs numbering from 1 in one folder wrote into each other's files).
        path = self.spool_dir / f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex}.part"
        return SpooledDataSet(path, b"\x00" * 128 + b"DICM" + meta, durable=self.durable)

    def handle_store(self, request: DimseRequest) -> int | tuple[int, str]:
        """C-STORE (PS3.4 B.2.2): check the spooled data set is whole, file it under its study; answer a
        status (with an Error Comment when there is something to say).

        The data set was written as received behind a File Meta group (PS3.10 §7.1); here it is
        walked once (:func:`.integrity.check_dataset`), moved to
        ``storage_dir/<StudyUID>/<SOPInstanceUID>.dcm`` following the duplicate policy, and recorded.
        Whatever is not stored is removed: no file and no spool file remain.
        """
        spooled = request.spooled
        if spooled is None:
            return CANNOT_UNDERSTAND
        try:
            status, comment, instance = self._file(request, spooled)
        finally:
            spooled.discard()  # moved into place already (or refused): the spool name goes either way
        if instance is None:
            return status, comment
        sop_instance = instance.sop_instance_uid
        if instance.duplicate:
            LOGGER.warning("C-STORE %s from %s: SOP Instance UID received again, %s (duplicates policy %s)",
                           sop_instance, instance.calling_ae_title, _DUPLICATE_OUTCOMES[instance.duplicate],
                           self.duplicate_policy)
            with self._lock:
                self._duplicates.append(instance)
                del self._duplicates[: -self.history or None]
            _notify(self.on_duplicate, instance, "on_duplicate")
        if instance.duplicate in ("", "replaced"):
            with self._lock:
                self._stored[sop_instance] = instance
                self._stored.move_to_end(sop_instance)
                while len(self._stored) > self.history:
                    self._stored.popitem(last=False)
            _notify(self.on_stored, instance, "on_stored")
        return status, comment

    def _file(self, request: DimseRequest, spooled: SpooledDataSet) -> tuple[int, str, StoredInstance | None]:
        """(status, error comment, what was stored or found a duplicate of) for one spooled data set."""
        sop_class = str(request.command.get(0x0002, ""))
        sop_instance = str(request.command.get(0x1000, ""))
        calling = request.calling_ae_title
        ts = request.transfer_syntax
        if spooled.error is not None:
            LOGGER.error("C-STORE %s: cannot write %s: %s", sop_instance, spooled.path, spooled.error)
            return OUT_OF_RESOURCES, "cannot write the data set to disk", None
        if len(sop_instance) > 64 or not _UID.fullmatch(sop_instance):
            LOGGER.warning("C-STORE from %s: Affected SOP Instance UID %r is not a UID", calling, sop_instance[:80])
            return INVALID_OBJECT_INSTANCE, "the Affected SOP Instance UID is not a valid UID (PS3.5 §9)", None
        try:
            facts, problem = check_dataset(spooled.path, spooled.dataset_offset, ts, sop_class_uid=sop_class,
                                           sop_instance_uid=sop_instance, head=spooled.head, size=spooled.size)
        except OSError as exc:
            LOGGER.error("C-STORE %s: cannot read back %s: %s", sop_instance, spooled.path, exc)
            return OUT_OF_RESOURCES, "cannot read the data set back from disk", None
        if problem is not None:
            LOGGER.warning("C-STORE %s from %s refused, nothing kept: %s", sop_instance, calling, problem.message)
            status = CANNOT_UNDERSTAND if problem.kind == TRUNCATED else DATA_SET_MISMATCH
            return status, problem.message, None
        study = facts.study_instance_uid
        if not study or len(study) > 64 or not _UID.fullmatch(study):
            LOGGER.warning("C-STORE %s from %s has no usable Study Instance UID", sop_instance, calling)
            return DATA_SET_MISMATCH, "the data set has no valid Study Instance UID", None
        directory = self.storage_dir / study
        path = directory / f"{sop_instance}.dcm"
        try:
            try:
                duplicate = self._place(spooled.path, path)
            except FileNotFoundError:  # first instance of this study (or its folder was removed)
                directory.mkdir(parents=True, exist_ok=True)
                duplicate = self._place(spooled.path, path)
        except OSError as exc:
            LOGGER.error("C-STORE %s: cannot file %s: %s", sop_instance, path, exc)
            return OUT_OF_RESOURCES, "cannot file the data set", None
        instance = StoredInstance(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            study_instance_uid=study,
            path=path,
            calling_ae_title=calling,
            transfer_syntax_uid=ts,
            size=spooled.size,
            received_at=dt.datetime.now(dt.UTC),
            duplicate=duplicate,
        )
        if duplicate == "kept-first":
            comment = "duplicate SOP Instance UID: the copy received first is kept, this one discarded"
            return ELEMENTS_DISCARDED, comment, instance
        if duplicate == "rejected":
            return DUPLICATE_SOP_INSTANCE, "duplicate SOP Instance UID: already stored, refused", instance
        if duplicate == "replaced":
            return SUCCESS, "the earlier copy was replaced by this one", instance
        return SUCCESS, "", instance

    def _place(self, spool: Path, path: Path) -> str:
        """Move the checked spool file to ``path`` atomically; returns "" or what the duplicate policy did.

        keep-last: ``rename`` (atomic replace). keep-first and reject: a hard link, which fails when
        the name exists, so of two copies arriving at once (even in two processes) exactly one wins;
        on a file system without hard links a rename after an existence check (not atomic) is used.
        """
        if self.duplicate_policy == "keep-last":
            existed = path.exists()  # for the record only: the replace itself is atomic either way
            os.replace(spool, path)
            return "replaced" if existed else ""
        try:
            os.link(spool, path)
        except FileExistsError:
            return "kept-first" if self.duplicate_policy == "keep-first" else "rejected"
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if path.exists():
                return "kept-first" if self.duplicate_policy == "keep-first" else "rejected"
            os.rename(spool, path)
        return ""

    def handle_commit(self, request: DimseRequest) -> tuple[int, CommitmentReport | None]:
        """N-ACTION Request Storage Commitment (PS3.4 J.3.2): commit only what is really on disk.

        Returns the N-ACTION status and, on success, the report (the N-EVENT-REPORT) to send after
        the N-ACTION-RSP.
        """
        command = request.command
        if command.get(0x0003) != StorageCommitmentPushModel:
            return UNRECOGNIZED_OPERATION, None
        if command.get(0x1001) != StorageCommitmentPushModelInstance:
            return NO_SUCH_SOP_INSTANCE, None
        if command.get(0x1008) != 1:
            return NO_SUCH_ACTION, None
        try:
            ts = UID(request.transfer_syntax)
            ds = read_dataset(BytesIO(request.dataset_bytes()), ts.is_implicit_VR, True)
            transaction_uid, references = parse_commitment_request(ds)
        except (ValueError, TypeError, AttributeError, EOFError) as exc:
            LOGGER.warning("Storage Commitment request from %s: %s", request.calling_ae_title, exc)
            return (INVALID_ATTRIBUTE_VALUE if isinstance(exc, InvalidUid) else MISSING_ATTRIBUTE), None
        committed: list[tuple[str, str]] = []
        failed: list[tuple[str, str, int]] = []
        for sop_class, sop_instance in references:
            reason = self._commit_failure(sop_class, sop_instance)
            if reason is None:
                committed.append((sop_class, sop_instance))
            else:
                failed.append((sop_class, sop_instance, reason))
        report = CommitmentReport(transaction_uid, tuple(committed), tuple(failed))
        if self.commitment_reply == "new" and request.calling_ae_title not in self.commitment_peers:
            LOGGER.error("Storage Commitment: no port configured for %s, cannot report back", request.calling_ae_title)
            return PROCESSING_FAILURE, None  # the requestor must not wait in vain
        return SUCCESS, report

    def report_on_new_association(self, request: DimseRequest, report: CommitmentReport) -> None:
        """Deliver a commitment report on an association to the requestor (PS3.4 J.3.3.1); logs failures."""
        target = DicomPeer(
            host=request.address,
            port=self.commitment_peers[request.calling_ae_title],
            ae_title=request.calling_ae_title,
            calling_ae_title=self.ae_title,
        )
        try:
            send_commitment_report(target, report)
        except SendError as exc:  # a background thread: log, the requestor times out and asks again
            LOGGER.error("Storage Commitment report to %s failed: %s", target, exc)

    def _commit_failure(self, sop_class: str, sop_instance: str) -> int | None:
        """None when committed, else the Failure Reason (PS3.4 J.3.2.1.1.1)."""
        record = self.find(sop_instance)
        if record is not None:
            if record.sop_class_uid != sop_class:
                return FAILURE_CLASS_INSTANCE_CONFLICT
            return None if record.path.is_file() else FAILURE_NO_SUCH_OBJECT
        if "/" in sop_instance or sop_instance.startswith("."):
            return FAILURE_NO_SUCH_OBJECT
        # Not (or no longer) in memory: it may still be on disk from before.
        if any(self.storage_dir.glob(f"*/{sop_instance}.dcm")):
            return None
        return FAILURE_NO_SUCH_OBJECT

    # -- connections --

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                conn, address = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            host = address[0]
            with self._lock:
                serving = [s for s in self._sessions if not s.crowded]
                from_peer = sum(1 for s in self._sessions if s.address == host)
                crowded = len(serving) >= self.max_associations or from_peer >= self.max_per_peer
                # Saying no costs a thread until ARTIM: bound those too, then just close.
                hopeless = crowded and (
                    len(self._sessions) - len(serving) >= max(self.max_associations, 1)
                    or from_peer >= 2 * self.max_per_peer
                )
                if not hopeless:
                    session = _Association(self, conn, host, crowded=crowded)
                    self._sessions.add(session)
            if hopeless:
                LOGGER.warning("Storage SCP: %s holds %d connections; closing a new one at once", host, from_peer)
                try:
                    conn.close()
                except OSError:
                    pass  # already gone
                continue
            if crowded:
                LOGGER.warning("Storage SCP: %d associations open (%d from %s); the next is rejected (local limit)",
                               len(serving), from_peer, host)
            session.thread.start()

    def _ended(self, session: "_Association") -> None:
        with self._lock:
            self._sessions.discard(session)


class _Association:
    """One association as acceptor (PS3.8 §9.2 Sta2 -> Sta6 -> Sta1), served in its own thread."""

    def __init__(self, scp: StorageScp, conn: socket.socket, address: str, *, crowded: bool = False) -> None:
        self.scp = scp
        self.address = address
        self.crowded = crowded
        self.wire = PduStream(conn, f"association from {address}", scp.network_timeout)
        # ARTIM (PS3.8 §9.1.5): the TLS handshake and the whole A-ASSOCIATE-RQ must arrive by then
        self.deadline = time.monotonic() + scp.artim_timeout
        self.thread = threading.Thread(target=self.run, name=f"storage-scp-assoc-{address}", daemon=True)
        # Largest PDU body we read: what we announced (PS3.8 D.1), or 64 MiB when "unlimited"
        self.limit = scp.max_pdu or 64 * 1024 * 1024
        self.calling_ae_title = ""
        self.contexts: dict[int, tuple[str, str]] = {}
        self.fragment = fragment_size(0)
        self.message_id = 0
        self._command: list[bytes] = []
        self._dataset: list[memoryview] = []
        self._fields: dict[int, int | str] | None = None
        self._spooled: SpooledDataSet | None = None

    def run(self) -> None:
        try:
            if self.scp.ssl_context is not None and not self._secure(self.scp.ssl_context):
                return
            if not self._negotiate():
                return
            while True:
                pdu_type, body = self.wire.read_pdu(self.limit)
                if pdu_type == P_DATA_TF:
                    self._on_data(body)
                elif pdu_type == RELEASE_RQ_TYPE:  # A-RELEASE-RQ -> A-RELEASE-RP (PS3.8 §7.2)
                    self.wire.send([RELEASE_RP])
                    return
                elif pdu_type == ABORT:
                    LOGGER.info("%s from %s", pdu_name(pdu_type, body), self.calling_ae_title or self.address)
                    return
                else:  # A-P-ABORT, service provider, unexpected PDU (PS3.8 §9.3.8)
                    LOGGER.warning("unexpected %s from %s, aborting", pdu_name(pdu_type, body), self.address)
                    self.wire.abort(source=2, reason=2)
                    return
        except SendError as exc:
            LOGGER.info("association from %s ended: %s", self.calling_ae_title or self.address, exc)
        except Exception:  # a bug here must end this association, not the server
            LOGGER.exception("association from %s failed", self.address)
            self.wire.abort(source=2)
        finally:
            self.wire.close()
            if self._spooled is not None:  # lost in the middle of a data set: nothing was stored
                self._spooled.discard()
            self.scp._ended(self)

    def _secure(self, context: ssl.SSLContext) -> bool:
        """Server side of the TLS handshake (PS3.15 B.1), bounded by the network timeout; False if it failed."""
        sock = self.wire.sock
        if sock is None:
            return False  # stopped before we began
        try:
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            tls = context.wrap_socket(sock, server_side=True)
        except OSError as exc:  # ssl.SSLError, a timeout, a reset: this peer cannot talk to us
            LOGGER.warning("TLS handshake with %s failed: %s", self.address, exc)
            return False
        self.wire = PduStream(tls, self.wire.label, self.scp.network_timeout)
        return True

    # -- A-ASSOCIATE (PS3.8 §7.1, §9.3.2-9.3.4) --

    def _negotiate(self) -> bool:
        # An A-ASSOCIATE-RQ is a few hundred bytes (128 presentation contexts: ~20 KiB)
        pdu_type, body = self.wire.read_pdu(min(self.limit, _MAX_RQ_BYTES), deadline=self.deadline)
        if pdu_type != ASSOCIATE_RQ:
            self.wire.abort(source=2, reason=2)
            return False
        if self.crowded:
            self._reject(2, 3, 2)  # rejected-transient, service provider (presentation), local limit exceeded
            return False
        primitive = decode_associate(pdu_type, body)
        self.calling_ae_title = str(primitive.calling_ae_title).strip()
        if primitive.application_context_name != APPLICATION_CONTEXT:
            self._reject(1, 1, 2)  # permanent, service user, application context name not supported
            return False
        self.fragment = fragment_size(peer_max_length(primitive))
        results: list[PresentationContext] = []
        for proposed in primitive.presentation_context_definition_list:
            abstract = str(proposed.abstract_syntax)
            offered = [str(ts) for ts in proposed.transfer_syntax]
            if abstract in _STORAGE_CLASSES:
                acceptable: frozenset[str] | list[str] = _STORAGE_SYNTAXES
            elif abstract in (Verification, StorageCommitmentPushModel):
                acceptable = _UNCOMPRESSED
            else:
                acceptable = []
            chosen = next((ts for ts in offered if ts in acceptable), None)
            # PS3.8 Table 9-18: 0 acceptance, 3 abstract syntax not supported, 4 transfer syntaxes not supported
            results.append(presentation_context(proposed.context_id, abstract,
                                                [chosen or (offered[0] if offered else ImplicitVRLittleEndian)],
                                                result=0x00 if chosen else (0x04 if acceptable else 0x03)))
            if chosen:
                self.contexts[proposed.context_id] = (abstract, chosen)
        self.wire.send([encode_associate(calling_ae_title=primitive.calling_ae_title,
                                         called_ae_title=primitive.called_ae_title, max_pdu=self.scp.max_pdu,
                                         results=results)])
        return True

    def _reject(self, result: int, source: int, reason: int) -> None:
        self.wire.send([reject_pdu(result, source, reason)])
        self.wire.close()

    # -- P-DATA (PS3.8 §9.3.5, Annex E) --

    def _on_data(self, body: bytearray) -> None:
        for context_id, control, value in iter_pdvs(body):
            if context_id not in self.contexts:
                LOGGER.warning("%s used presentation context %d that was not accepted", self.address, context_id)
                self.wire.abort(source=2, reason=6)  # invalid PDU parameter value
                raise SendError(f"invalid presentation context {context_id}")
            if control & 0x01:
                self._command.append(bytes(value))
                if control & 0x02:
                    fields = self._fields = parse_command(b"".join(self._command))
                    self._command = []
                    if fields.get(0x0800) == 0x0101:  # no data set follows
                        self._fields = None
                        self._dispatch(context_id, fields, [], None)
                    elif fields.get(0x0100) == 0x0001:  # C-STORE-RQ: write the data set as it comes
                        self._spooled = self.scp.spool(
                            str(fields.get(0x0002, "")),
                            str(fields.get(0x1000, "")),
                            self.contexts[context_id][1],
                            self.calling_ae_title,
                        )
            else:
                if self._fields is None:
                    self.wire.abort(source=2, reason=2)
                    raise SendError("data set fragment without a command")
                if self._spooled is not None:
                    self._spooled.add(value)
                else:
                    self._dataset.append(value)
                if control & 0x02:
                    fields, dataset, spooled = self._fields, self._dataset, self._spooled
                    self._fields, self._dataset, self._spooled = None, [], None
                    if spooled is not None:
                        spooled.finish()
                    self._dispatch(context_id, fields, dataset, spooled)

    def _dispatch(
        self,
        context_id: int,
        fields: dict[int, int | str],
        dataset: list[memoryview],
        spooled: SpooledDataSet | None,
    ) -> None:
        abstract, ts = self.contexts[context_id]
        command_field = int(fields.get(0x0100, 0) or 0)
        if command_field & 0x8000:
            self._on_response(fields)
            return
        request = DimseRequest(
            command=fields,
            context_id=context_id,
            abstract_syntax=abstract,
            transfer_syntax=ts,
            calling_ae_title=self.calling_ae_title,
            address=self.address,
            dataset=dataset,
            spooled=spooled,
        )
        if command_field == 0x0130:  # N-ACTION-RQ
            self._serve_commitment(request)
            return
        handler = self.scp.handlers.get(command_field)
        answer: int | tuple[int, str] = UNRECOGNIZED_OPERATION
        if handler is not None:
            try:
                answer = handler(request)
            except Exception:  # answer with a status, never with a dropped association
                LOGGER.exception("handler for command 0x%04X failed", command_field)
                answer = PROCESSING_FAILURE if command_field != 0x0001 else CANNOT_UNDERSTAND
        status, comment = answer if isinstance(answer, tuple) else (answer, "")
        self._respond(request, command_field | 0x8000, status, comment=comment)

    def _respond(
        self,
        request: DimseRequest,
        response_field: int,
        status: int,
        extra: tuple[tuple[int, int | str], ...] = (),
        *,
        comment: str = "",
    ) -> None:
        """A DIMSE-C/N response without data set (PS3.7 §9.3, §10.3); ``comment`` becomes the Error
        Comment (0000,0902, LO: 64 characters at most) of a warning or failure."""
        affected_class = request.command.get(0x0002) or request.command.get(0x0003) or request.abstract_syntax
        affected_instance = request.command.get(0x1000) or request.command.get(0x1001)
        fields: list[tuple[int, int | str]] = [
            (0x0002, str(affected_class)),
            (0x0100, response_field),
            (0x0120, int(request.command.get(0x0110, 0) or 0)),
            (0x0800, 0x0101),
            (0x0900, status),
        ]
        if comment and status != SUCCESS:
            fields.append((0x0902, clip(comment)))  # LO
        if affected_instance:
            fields.append((0x1000, str(affected_instance)))
        fields.extend(extra)
        self.wire.send(dimse_buffers(request.context_id, encode_command(fields), None, self.fragment))

    def _serve_commitment(self, request: DimseRequest) -> None:
        try:
            status, report = self.scp.handle_commit(request)
        except Exception:  # answer with a status, never with a dropped association
            LOGGER.exception("Storage Commitment handler failed")
            status, report = PROCESSING_FAILURE, None
        action = request.command.get(0x1008)
        self._respond(request, 0x8130, status, ((0x1008, int(action)),) if isinstance(action, int) else ())
        if report is None:
            return
        if self.scp.commitment_reply == "new":
            threading.Thread(
                target=self.scp.report_on_new_association,
                args=(request, report),
                name="commitment-report",
                daemon=True,
            ).start()
            return
        # Same association: N-EVENT-REPORT-RQ right after the N-ACTION-RSP (PS3.4 J.3.3); its
        # N-EVENT-REPORT-RSP arrives later through _on_response.
        dataset = report.encode(request.transfer_syntax)
        self.message_id = self.message_id % 0xFFFF + 1
        command = encode_command(
            (
                (0x0002, StorageCommitmentPushModel),
                (0x0100, 0x0100),  # N-EVENT-REPORT-RQ
                (0x0110, self.message_id),
                (0x0800, 0x0000),  # a data set follows
                (0x1000, StorageCommitmentPushModelInstance),
                (0x1002, report.event_type),
            )
        )
        self.wire.send(dimse_buffers(request.context_id, command, dataset, self.fragment))

    def _on_response(self, fields: dict[int, int | str]) -> None:
        status = fields.get(0x0900)
        if status != 0x0000:
            LOGGER.warning(
                "%s answered our message %s (command 0x%04X) with status %r",
                self.calling_ae_title, fields.get(0x0120), int(fields.get(0x0100, 0) or 0), status,
            )


def _notify(callback: Callable[[StoredInstance], None] | None, instance: StoredInstance, name: str) -> None:
    if callback is None:
        return
    try:
        callback(instance)
    except Exception:  # the answer is decided; a failing observer must not change it
        LOGGER.exception("%s callback failed for %s", name, instance.sop_instance_uid)


def handle_echo(request: DimseRequest) -> int:
    """C-ECHO (PS3.7 §9.1.5): we are alive."""
    return SUCCESS


def encode_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str, *, source_ae_title: str = "") -> bytes:
    """The File Meta Information group (PS3.10 §7.1), Explicit VR Little Endian, without preamble."""

    def element(elem: int, vr: bytes, value: bytes) -> bytes:
        if vr == b"OB":
            return struct.pack("<HH2sHI", 0x0002, elem, vr, 0, len(value)) + value
        return struct.pack("<HH2sH", 0x0002, elem, vr, len(value)) + value

    def text(value: str, pad: bytes) -> bytes:
        raw = value.encode("ascii")
        return raw + pad if len(raw) % 2 else raw

    source = source_ae_title.strip()
    body = b"".join(
        (
            element(0x0001, b"OB", b"\x00\x01"),
            element(0x0002, b"UI", text(sop_class, b"\x00")),
            element(0x0003, b"UI", text(sop_instance, b"\x00")),
            element(0x0010, b"UI", text(transfer_syntax, b"\x00")),
            element(0x0012, b"UI", text(PYNETDICOM_IMPLEMENTATION_UID, b"\x00")),
            element(0x0013, b"SH", text(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
            element(0x0016, b"AE", text(source, b" ")) if source else b"",
        )
    )
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


__all__ = ["DimseRequest", "StorageScp", "StoredInstance", "encode_file_meta", "handle_echo"]
