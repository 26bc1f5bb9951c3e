"""C-STORE SCU: send DICOM files to a Storage SCP (PS3.4 Annex B, PS3.7 §9.1.1, PS3.8 §9).

Why this module drives the association itself instead of ``pynetdicom.Association``:
pynetdicom's DUL reactor moves one PDU per loop turn through queues and sleeps 1 ms whenever a
queue is empty, so a C-STORE costs a few milliseconds however small it is (≈350 instances/s
measured against dcmtk, which does ≈1,700/s). Storage is the bulk path of the simulator, so here
one association is one blocking socket owned by one thread:

* the A-ASSOCIATE-RQ/AC/RJ PDUs are encoded and decoded with pynetdicom's own ``pdu`` classes
  (nothing hand-rolled where the negotiation is subtle);
* a C-STORE-RQ command set (PS3.7 §9.3.1.1, Implicit VR Little Endian as PS3.7 §6.3.1
  requires) is a handful of fixed elements packed with ``struct``;
* the data set is the file's own bytes after the File Meta group when the peer accepted the
  file's transfer syntax: no pydicom decode, no re-encode, and on a plain socket not even a read
  into this process — each P-DATA-TF header goes out with ``sendmsg`` and its PDV's bytes with
  ``sendfile``, straight from the page cache (``PduStream.send_file_message``);
* while the peer stores instance *n* the next file is opened and read ahead by the kernel
  (``posix_fadvise``), so disk and peer overlap.

Only when the peer refused the file's transfer syntax is the file decoded by pydicom
(decompressed if needed) and re-encoded in an uncompressed syntax the peer accepted.

With ``peer.tls`` the socket is wrapped in TLS right after connecting (PS3.15 Annex B, certificate
checked against ``peer.host``). TLS encrypts in this process and its sockets have no ``sendmsg``, so
the data set is read into memory and each DIMSE message's buffers are coalesced into a few large
writes instead; the plain path is unchanged.

Size (over the ~400 lines of simulations/): one hot path, kept whole on purpose — proposing contexts,
planning each instance (its context, a re-encoded copy or not), streaming it, its status and retry,
and the header scan of files read from disk. The PDU and DIMSE encoding it shares with the Storage SCP
is in :mod:`.upper_layer`.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import GENERAL_STATUS, STORAGE_SERVICE_CLASS_STATUS

from generators.records import InstanceRecord
from simulations.transport.dimse.common import DicomPeer
from simulations.transport.dimse.common import reject_reason
from simulations.transport.dimse.upper_layer import (
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    DUPLICATE_SOP_INSTANCE,
    INVALID_OBJECT_INSTANCE,
    NOT_AUTHORIZED,
    P_DATA_TF,
    RELEASE_RP_TYPE,
    RELEASE_RQ,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    UNRECOGNIZED_OPERATION,
    PduStream,
    decode_associate,
    dimse_buffers,
    encode_associate,
    encode_command,
    encode_dataset,
    fragment_size,
    iter_pdvs,
    parse_command,
    pdu_name,
    peer_max_length,
    presentation_context,
)
from simulations.transport.errors import SendError
from simulations.transport.tls import wrap_client

LOGGER = logging.getLogger(__name__)

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
DEFAULT_MAX_PDU = 4 * 1024 * 1024
_MAX_CONTEXTS = 128  # odd presentation context IDs 1..255 (PS3.8 §9.3.2.2)

# Failures a retry cannot cure (PS3.4 B.2.3, PS3.7 C): the peer would answer the same again.
_PERMANENT_FAILURE_RANGES = ((0xA900, 0xA9FF),)
_PERMANENT_FAILURES = frozenset({DUPLICATE_SOP_INSTANCE, INVALID_OBJECT_INSTANCE, SOP_CLASS_NOT_SUPPORTED, NOT_AUTHORIZED,
                                 UNRECOGNIZED_OPERATION})
_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})


Category = Literal["success", "warning", "failure"]


def read_instance(path: Path | str) -> InstanceRecord:
    """The :class:`InstanceRecord` of a DICOM file (PS3.10) read from disk: its File Meta group (§7.1) and
    Study Instance UID. The common case (Explicit/Implicit VR Little Endian, no undefined-length sequence
    before (0020,000D)) is parsed from the first few KiB by hand; anything else falls back to pydicom.
    Files the generator has just written need none of this: it hands out their records."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            head = fp.read(16384)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    parsed = _scan_header(head)
    if parsed is None:
        parsed = _scan_header_with_pydicom(path)
    sop_class, sop_instance, ts, study, offset = parsed
    return InstanceRecord(path, sop_class, sop_instance, ts, study, offset)


@dataclass(slots=True)
class StoreResult:
    """The outcome of one instance: the last C-STORE-RSP status (PS3.4 B.2.3) and how we got it.

    ``status`` is None when the instance never went on the wire (not sendable to this peer, or
    its association was lost before an answer came): ``message`` says why.
    """

    instance: InstanceRecord
    status: int | None
    category: Category
    message: str
    attempts: int
    transfer_syntax_uid: str = ""  # the syntax it went on the wire in (a copy's, when the file's was refused)

    @property
    def sop_instance_uid(self) -> str:
        return self.instance.sop_instance_uid

    @property
    def sop_class_uid(self) -> str:
        return self.instance.sop_class_uid

    @property
    def path(self) -> Path:
        return self.instance.path

    @property
    def stored(self) -> bool:
        """True when the peer took responsibility for the instance (success or warning)."""
        return self.category != "failure"


class StoreError(SendError):
    """An association-level failure part-way through :func:`send_instances`.

    ``results`` holds every per-instance outcome obtained before the failure (those with
    ``stored`` True are safely at the peer), ``unsent`` the instances whose fate is unknown or
    that were never attempted, so the caller can resend exactly those.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        results: list[StoreResult],
        unsent: list[InstanceRecord],
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.results = results
        self.unsent = unsent


def status_category(status: int) -> Category:
    """Classify a C-STORE status per PS3.4 Table B.2-1 and PS3.7 Annex C."""
    if status == SUCCESS:
        return "success"
    if 0xB000 <= status <= 0xBFFF or status in _WARNINGS:
        return "warning"
    return "failure"


def status_text(status: int) -> str:
    """Human description of a Storage Service status code (PS3.4 B.2.3)."""
    entry = STORAGE_SERVICE_CLASS_STATUS.get(status) or GENERAL_STATUS.get(status)
    return entry[1] if entry else f"status 0x{status:04X}"


def is_permanent_failure(status: int) -> bool:
    """True for failures a retry cannot cure (data set does not match SOP class, SOP class refused)."""
    return status in _PERMANENT_FAILURES or any(lo <= status <= hi for lo, hi in _PERMANENT_FAILURE_RANGES)


def send_instances(
    peer: DicomPeer,
    files: Sequence[Path | str | InstanceRecord],
    *,
    associations: int = 1,
    retries: int = 1,
    max_pdu: int = DEFAULT_MAX_PDU,
    on_result: Callable[[StoreResult], None] | None = None,
) -> list[StoreResult]:
    """Send DICOM files to ``peer`` with C-STORE (PS3.4 Annex B) and return one result per instance.

    One association per study (shared by its series); with ``associations`` > 1 each study's
    instances are split over that many concurrent associations. Presentation contexts are
    proposed for exactly the SOP classes and transfer syntaxes present (PS3.8 §9.3.2.2): one
    context per (class, file syntax) plus one per class offering Explicit/Implicit VR Little
    Endian, used to send a decoded (and if need be decompressed) copy when the peer refused the
    file's own syntax. Failed instances are re-sent up to ``retries`` more times unless the
    failure is permanent (0xA9xx, 0x0122...). ``on_result`` is called for every final result, from
    the sending thread(s).

    Per-instance failures are results, not exceptions. An association that cannot be opened or
    is lost raises :class:`StoreError` (a :class:`SendError`) carrying the results so far.
    """
    refs = [f if isinstance(f, InstanceRecord) else read_instance(f) for f in files]
    order = {(ref.path, ref.sop_instance_uid): index for index, ref in enumerate(refs)}
    studies: dict[str, list[InstanceRecord]] = {}
    for ref in refs:
        studies.setdefault(ref.study_instance_uid, []).append(ref)
    units: list[list[InstanceRecord]] = []
    for members in studies.values():
        parts = max(1, min(associations, len(members)))
        size = -(-len(members) // parts)
        units.extend(members[i : i + size] for i in range(0, len(members), size))

    results: list[StoreResult] = []
    lock = threading.Lock()

    def record(result: StoreResult) -> None:
        with lock:
            results.append(result)
        if on_result is not None:
            on_result(result)

    def run(unit: list[InstanceRecord]) -> StoreError | None:
        try:
            _send_unit(peer, unit, retries=retries, max_pdu=max_pdu, record=record)
        except StoreError as exc:
            return exc
        return None

    if associations <= 1 or len(units) == 1:
        errors = []
        for index, unit in enumerate(units):
            error = run(unit)
            if error is not None:
                # Later studies were never attempted: they are unsent too.
                error.unsent.extend(ref for later in units[index + 1 :] for ref in later)
                errors.append(error)
                break
    else:
        with ThreadPoolExecutor(max_workers=associations, thread_name_prefix="cstore") as pool:
            errors = [e for e in pool.map(run, units) if e is not None]

    results.sort(key=lambda r: order.get((r.path, r.sop_instance_uid), 0))
    if errors:
        first = errors[0]
        unsent = [ref for e in errors for ref in e.unsent]
        raise StoreError(
            first.message if len(errors) == 1 else f"{first.message} (and {len(errors) - 1} more association failures)",
            permanent=all(e.permanent for e in errors),
            results=results,
            unsent=unsent,
        )
    return results


# --------------------------------------------------------------------------------------------
# one unit of work: a study (or a slice of one) on one association
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """How one instance goes on the wire: presentation context, and whether to re-encode."""

    ref: InstanceRecord
    context_id: int | None
    wire_syntax: str
    convert: bool
    attempts: int = 0
    last: StoreResult | None = None


def _propose(refs: Sequence[InstanceRecord]) -> list[PresentationContext]:
    """Presentation contexts for exactly the (SOP class, transfer syntax) pairs in ``refs``."""
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        syntaxes = wanted.setdefault(ref.sop_class_uid, [])
        if ref.transfer_syntax_uid not in syntaxes:
            syntaxes.append(ref.transfer_syntax_uid)
    contexts: list[PresentationContext] = []
    for sop_class, syntaxes in wanted.items():
        for ts in syntaxes:
            contexts.append(_context(len(contexts), sop_class, [ts]))
        # The fallback context: the peer picks the uncompressed syntax it prefers; instances in
        # a syntax it refused are decoded and re-encoded into that one.
        contexts.append(_context(len(contexts), sop_class, list(UNCOMPRESSED)))
    if len(contexts) > _MAX_CONTEXTS:
        raise SendError(
            f"{len(wanted)} SOP classes need {len(contexts)} presentation contexts, more than the "
            f"{_MAX_CONTEXTS} one association can carry; send them in smaller batches",
            permanent=True,
        )
    return contexts


def _context(index: int, abstract_syntax: str, syntaxes: list[str]) -> PresentationContext:
    """The ``index``-th proposed context: context IDs are odd (PS3.8 §9.3.2.2)."""
    return presentation_context(2 * index + 1, abstract_syntax, syntaxes)


def _plan(ref: InstanceRecord, accepted: dict[int, tuple[str, str]]) -> _Plan:
    exact = None
    fallback = None
    for cx_id, (abstract, ts) in accepted.items():
        if abstract != ref.sop_class_uid:
            continue
        if ts == ref.transfer_syntax_uid:
            exact = cx_id
            break
        if ts in UNCOMPRESSED and fallback is None:
            fallback = cx_id
    if exact is not None:
        return _Plan(ref, exact, ref.transfer_syntax_uid, convert=False)
    if fallback is not None:
        return _Plan(ref, fallback, accepted[fallback][1], convert=True)
    return _Plan(ref, None, "", convert=False)


def _send_unit(
    peer: DicomPeer,
    refs: list[InstanceRecord],
    *,
    retries: int,
    max_pdu: int,
    record: Callable[[StoreResult], None],
) -> None:
    contexts = _propose(refs)
    link = _Link(peer, max_pdu=max_pdu)
    try:
        accepted = link.associate(contexts)
    except SendError as exc:
        raise StoreError(exc.message, permanent=exc.permanent, results=[], unsent=list(refs)) from exc

    plans = [_plan(ref, accepted) for ref in refs]
    pending: list[_Plan] = []
    finished: set[int] = set()  # id() of plans whose final result has been recorded
    for plan in plans:
        if plan.context_id is None:
            offered = ", ".join(sorted({ts for a, ts in accepted.values()})) or "nothing"
            plan.last = _result(
                plan,
                None,
                "failure",
                f"not sendable: {peer} accepted no transfer syntax usable for SOP class "
                f"{plan.ref.sop_class_uid} in {plan.ref.transfer_syntax_uid} (accepted: {offered})",
            )
            record(plan.last)
            finished.add(id(plan))
        else:
            pending.append(plan)

    message_id = 0
    by_kernel = not link.tls
    payload: _Payload = b""
    try:
        for round_no in range(retries + 1):
            if not pending:
                break
            again: list[_Plan] = []
            payload = _payload(pending[0], by_kernel)
            for index, plan in enumerate(pending):
                following = pending[index + 1] if index + 1 < len(pending) else None
                if isinstance(payload, str):  # conversion failed: nothing to put on the wire
                    plan.last = _result(plan, None, "failure", payload)
                    record(plan.last)
                    finished.add(id(plan))
                    payload = _payload(following, by_kernel) if following else b""
                    continue
                message_id = message_id % 0xFFFF + 1
                plan.attempts += 1
                assert plan.context_id is not None
                link.send_store(plan.context_id, plan.ref.sop_class_uid, plan.ref.sop_instance_uid, payload, message_id)
                _release(payload)
                # Open the next file (and have the kernel read it ahead) while the peer stores this one.
                payload = _payload(following, by_kernel) if following else b""
                status, comment = link.read_store_response(message_id)
                category = status_category(status)
                text = status_text(status) + (f": {comment}" if comment else "")
                plan.last = _result(plan, status, category, text)
                if category == "failure" and not is_permanent_failure(status) and round_no < retries:
                    again.append(plan)
                else:
                    record(plan.last)
                    finished.add(id(plan))
            pending = again
    except SendError as exc:
        link.close()
        unsent: list[InstanceRecord] = []
        for plan in plans:
            if id(plan) in finished:
                continue
            if plan.last is not None:
                record(plan.last)  # a failure awaiting its retry: its last answer stands
            else:
                unsent.append(plan.ref)
        raise StoreError(exc.message, permanent=exc.permanent, results=[], unsent=unsent) from exc
    finally:
        _release(payload)
    link.release()


def _result(plan: _Plan, status: int | None, category: Category, message: str) -> StoreResult:
    return StoreResult(
        instance=plan.ref,
        status=status,
        category=category,
        message=message,
        attempts=plan.attempts,
        transfer_syntax_uid=plan.wire_syntax,
    )


@dataclass(slots=True)
class _FileRange:
    """An instance's data set as it lies in its file (after the File Meta group), for ``sendfile``."""

    file: BinaryIO
    offset: int
    size: int


_Payload = bytes | _FileRange | str  # the data set in memory or in its file; a str says why there is none


def _payload(plan: _Plan, by_kernel: bool) -> _Payload:
    """What to send for ``plan``: the file's own data set (a :class:`_FileRange` the kernel sends when
    ``by_kernel``, else its bytes), a re-encoded copy, or, if it cannot be produced, the reason as a str."""
    ref = plan.ref
    if not plan.convert:
        try:
            file = open(ref.path, "rb", buffering=0)  # noqa: SIM115 - closed by _release once sent
        except OSError as exc:
            return f"not sendable: cannot read {ref.path}: {exc.strerror}"
        try:
            size = max(os.fstat(file.fileno()).st_size - ref.dataset_offset, 0)
            if by_kernel:
                if hasattr(os, "posix_fadvise"):  # read ahead while the peer is busy with the previous instance
                    os.posix_fadvise(file.fileno(), ref.dataset_offset, size, os.POSIX_FADV_WILLNEED)
                return _FileRange(file, ref.dataset_offset, size)
            with file:
                return os.pread(file.fileno(), size, ref.dataset_offset)
        except OSError as exc:
            file.close()
            return f"not sendable: cannot read {ref.path}: {exc.strerror}"
    return _convert(ref, plan.wire_syntax)


def _release(payload: _Payload) -> None:
    """Close the file of a :class:`_FileRange` (sent, or never to be)."""
    if isinstance(payload, _FileRange):
        payload.file.close()


def _convert(ref: InstanceRecord, target: str) -> bytes | str:
    """Decode ``ref`` with pydicom and encode it in the uncompressed syntax ``target`` (PS3.5 §10)."""
    try:
        ds = dcmread(ref.path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()  # pixel data handlers: RLE natively, JPEG via pillow/pyjpegls if present
        return encode_dataset(ds, target)
    except Exception as exc:  # noqa: BLE001 - any decoder error makes this one instance unsendable
        return (
            f"not sendable: peer refused {ref.transfer_syntax_uid} and converting to {target} "
            f"failed: {type(exc).__name__}: {exc}"
        )


class _Link:
    """One association as requestor, driven synchronously (PS3.8 §9.3 PDUs, §9.2 state machine).

    Only what a C-STORE SCU needs: associate, exchange one DIMSE message at a time (no
    asynchronous operations window is negotiated), release, abort.
    """

    def __init__(self, peer: DicomPeer, *, max_pdu: int) -> None:
        self.peer = peer
        self.max_pdu = max_pdu
        self.wire: PduStream | None = None
        self.fragment = fragment_size(0)

    def associate(self, contexts: list[PresentationContext]) -> dict[int, tuple[str, str]]:
        """Open the connection and negotiate (PS3.8 §7.1); return accepted id -> (abstract, transfer syntax)."""
        peer = self.peer
        try:
            sock = socket.create_connection((peer.host, peer.port), timeout=peer.timeout)
        except OSError as exc:
            raise SendError(f"cannot connect to {peer}: {exc.strerror or exc}") from exc
        if peer.tls is not None:
            sock = wrap_client(sock, peer.tls, server_hostname=peer.host, peer=str(peer))
        wire = self.wire = PduStream(sock, str(peer), peer.timeout)

        wire.send([encode_associate(calling_ae_title=peer.calling_ae_title, called_ae_title=peer.ae_title,
                                    max_pdu=self.max_pdu, proposed=contexts)])

        pdu_type, body = wire.read_pdu()
        if pdu_type == ASSOCIATE_AC:
            reply = decode_associate(pdu_type, body)
            self.fragment = fragment_size(peer_max_length(reply))
            proposed = {cx.context_id: str(cx.abstract_syntax) for cx in contexts}
            accepted = {
                cx.context_id: (proposed[cx.context_id], str(cx.transfer_syntax[0]))
                for cx in reply.presentation_context_definition_results_list
                if cx.result == 0x00 and cx.context_id in proposed and cx.transfer_syntax
            }
            if not accepted:
                wire.abort()
                raise SendError(f"{peer} accepted none of the proposed presentation contexts", permanent=True)
            return accepted
        if pdu_type == ASSOCIATE_RJ and len(body) >= 4:
            wire.close()
            result, source, reason = body[1], body[2], body[3]
            kind = "permanently" if result == 0x01 else "transiently"
            raise SendError(
                f"{peer} rejected the association {kind}: {reject_reason(source, reason)}",
                permanent=result == 0x01,
                status=f"A-ASSOCIATE-RJ {result}/{source}/{reason}",
            )
        wire.close()
        raise SendError(f"{peer} answered the association request with {pdu_name(pdu_type, body)}")

    @property
    def tls(self) -> bool:
        return self._wire().tls

    def send_store(self, context_id: int, sop_class: str, sop_instance: str, dataset: bytes | _FileRange,
                   message_id: int) -> None:
        """Send one C-STORE-RQ (PS3.7 §9.3.1.1): command PDV, then the data set in PDVs."""
        command = encode_command(
            (
                (0x0002, sop_class),
                (0x0100, 0x0001),  # Command Field: C-STORE-RQ
                (0x0110, message_id),
                (0x0700, 0x0000),  # Priority: MEDIUM
                (0x0800, 0x0000),  # Command Data Set Type: a data set follows (anything but 0x0101)
                (0x1000, sop_instance),
            )
        )
        if isinstance(dataset, _FileRange):
            self._wire().send_file_message(context_id, command, dataset.file, dataset.offset, dataset.size,
                                           self.fragment)
        else:
            self._wire().send(dimse_buffers(context_id, command, dataset, self.fragment))

    def read_store_response(self, message_id: int) -> tuple[int, str]:
        """Wait for the C-STORE-RSP (PS3.7 §9.3.1.2) and return its (Status, Error Comment)."""
        fields = self._read_command()
        if fields.get(0x0100) != 0x8001:
            raise SendError(f"{self.peer} answered C-STORE with command field {fields.get(0x0100)!r}")
        if fields.get(0x0120) != message_id:
            raise SendError(f"{self.peer} answered message {fields.get(0x0120)!r}, expected {message_id}")
        status = fields.get(0x0900)
        if not isinstance(status, int):
            raise SendError(f"{self.peer} sent a C-STORE-RSP without a status")
        comment = fields.get(0x0902, "")
        return status, comment if isinstance(comment, str) else ""

    def release(self) -> None:
        """A-RELEASE-RQ and wait for the A-RELEASE-RP (PS3.8 §7.2); the stores are done whatever happens."""
        wire = self._wire()
        try:
            wire.send([RELEASE_RQ])
            pdu_type, _ = wire.read_pdu()
            if pdu_type != RELEASE_RP_TYPE:
                LOGGER.info("%s answered A-RELEASE-RQ with PDU type 0x%02X", self.peer, pdu_type)
        except SendError as exc:
            LOGGER.info("release with %s did not complete cleanly: %s", self.peer, exc)
        finally:
            wire.close()

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()

    def _wire(self) -> PduStream:
        if self.wire is None:
            raise SendError(f"association with {self.peer} is not open")
        return self.wire

    def _read_command(self) -> dict[int, int | str]:
        """Read P-DATA-TF PDUs until a complete command set; raise SendError on A-ABORT and the like."""
        wire = self._wire()
        fragments: list[bytes] = []
        while True:
            pdu_type, body = wire.read_pdu()
            if pdu_type != P_DATA_TF:
                wire.close()
                raise SendError(f"{self.peer} sent {pdu_name(pdu_type, body)} instead of a C-STORE-RSP")
            for _, control, value in iter_pdvs(body):
                if control & 0x01:  # command fragment (a C-STORE-RSP has no data set)
                    fragments.append(bytes(value))
                    if control & 0x02:
                        return parse_command(b"".join(fragments))


# --------------------------------------------------------------------------------------------
# header scan without pydicom (PS3.10 §7.1 File Meta, PS3.5 §7.1 element encoding)
# --------------------------------------------------------------------------------------------

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_STUDY_UID_TAG = (0x0020, 0x000D)


def _scan_header(head: bytes) -> tuple[str, str, str, str, int] | None:
    """(SOP class, SOP instance, transfer syntax, study UID, data set offset) or None to fall back."""
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    meta: dict[int, str] = {}
    offset = 132
    while offset + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, offset)
        if group != 0x0002:
            break
        vr = head[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", head, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", head, offset + 6)
            start = offset + 8
        if length == 0xFFFFFFFF or start + length > len(head):
            return None
        if element in (0x0002, 0x0003, 0x0010):
            meta[element] = head[start : start + length].rstrip(b"\x00 ").decode("ascii")
        offset = start + length
    if len(meta) != 3:
        return None
    ts = meta[0x0010]
    study = study_uid_in(head, offset, ts)
    if study is None:
        return None
    return meta[0x0002], meta[0x0003], ts, study, offset


def study_uid_in(data: bytes | bytearray | memoryview, offset: int, transfer_syntax: str) -> str | None:
    """The Study Instance UID (0020,000D) of an encoded data set starting at ``data[offset]``.

    Walks the elements without decoding them (PS3.5 §7.1.2/§7.1.3). Returns None when it cannot
    tell cheaply (big endian, deflated, an undefined-length sequence before the tag, truncated
    ``data``, or no such element): the caller then asks pydicom.
    """
    if transfer_syntax == ImplicitVRLittleEndian:
        implicit = True
    elif transfer_syntax == ExplicitVRLittleEndian or UID(transfer_syntax).is_encapsulated:
        implicit = False
    else:
        return None
    end = len(data)
    while offset + 8 <= end:
        group, element = struct.unpack_from("<HH", data, offset)
        if implicit:
            (length,) = struct.unpack_from("<I", data, offset + 4)
            start = offset + 8
        elif bytes(data[offset + 4 : offset + 6]) in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            start = offset + 8
        if (group, element) == _STUDY_UID_TAG:
            if start + length > end:
                return None
            return bytes(data[start : start + length]).rstrip(b"\x00 ").decode("ascii")
        if (group, element) > _STUDY_UID_TAG or length == 0xFFFFFFFF:
            return None
        offset = start + length
    return None


def _scan_header_with_pydicom(path: Path) -> tuple[str, str, str, str, int]:
    try:
        meta, offset = split_dataset(path)
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a bad file
        raise ValueError(f"{path} is not a readable DICOM file: {exc}") from exc
    required = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    missing = [kw for kw in required if kw not in meta]
    if missing:
        raise ValueError(f"{path} has no File Meta {', '.join(missing)} (PS3.10 §7.1); cannot send it")
    return (
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        str(meta.TransferSyntaxUID),
        str(ds.get("StudyInstanceUID", "")),
        offset,
    )


__all__ = [
    "DEFAULT_MAX_PDU",
    "InstanceRecord",
    "read_instance",
    "StoreError",
    "StoreResult",
    "is_permanent_failure",
    "send_instances",
    "status_category",
    "status_text",
    "study_uid_in",
]
