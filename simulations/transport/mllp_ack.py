"""HL7 v2 acknowledgments as MLLP carries them: one module for both sides of the exchange.

The listener reads only the MSH of what it receives (:func:`parse_msh`) and answers with
:class:`AckBuilder`; the senders check that answer with :func:`parse_ack` and :func:`check_ack`.
Acknowledgment semantics are HL7 v2.5.1 chapter 2 section 2.9 (original mode) and the MSA
segment (2.15.8, table 0008): ``AA``/``CA`` accept, ``AE``/``CE`` error, ``AR``/``CR`` reject; the
error conditions an ACK names in ERR-3 are table 0357.

The receiving side formats ACKs with plain strings and never runs a full HL7 parse: a receiver that
parsed every message would be the bottleneck of every simulation run. The sending side parses the
(small) ACK with python-hl7 and is strict about what it accepts as the answer to its message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import hl7

from simulations.transport.errors import SendError
from simulations.transport.mllp_framing import preview

# HL7 table 0008 acknowledgment codes: original mode (A*) and enhanced mode commit (C*).
ACCEPT_CODES = frozenset({"AA", "CA"})
ERROR_CODES = frozenset({"AE", "CE"})
REJECT_CODES = frozenset({"AR", "CR"})
ACK_CODES = ACCEPT_CODES | ERROR_CODES | REJECT_CODES

# HL7 table 0357 message error condition codes used in ERR-3.
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_FIELD_MISSING = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT = ("201", "Unsupported event code")
ERR_UNSUPPORTED_PROCESSING_ID = ("202", "Unsupported processing id")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_INTERNAL = ("207", "Application internal error")


class Msh(NamedTuple):
    """The MSH fields the transport needs (HL7 v2.5.1 section 2.14.9), as raw (still escaped) text.

    Field numbers follow the standard: MSH-1 is the field separator itself, so for a segment split
    on that separator, MSH-n is element ``n - 1``. A named tuple because the listener builds one
    per message and tuple construction is several times cheaper than a frozen dataclass's.
    """

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    character_set: str

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0]

    @property
    def trigger_event(self) -> str:
        """MSH-9.2 (``O01`` of ``ORM^O01^ORM_O01``), empty when the sender gave none."""
        parts = self.message_type.split(self.component_separator)
        return parts[1] if len(parts) > 1 else ""


# What an ACK answers when the sender's MSH could not be read: the standard delimiters, no fields.
_UNREADABLE = Msh("|", "^~\\&", "", "", "", "", "", "", "", "", "")


def parse_msh(text: str) -> Msh:
    """Read the MSH segment at the start of ``text`` (HL7 v2.5.1 section 2.14.9).

    Deliberately not a full parser: the listener's hot path needs only the header, and splitting
    one segment on its own field separator is an order of magnitude cheaper than parsing the whole
    message. Raises ``ValueError`` with a sentence when there is no usable MSH (missing segment,
    bad MSH-1/MSH-2 encoding characters).
    """
    if not text.startswith("MSH") or len(text) < 8:
        raise ValueError("the message does not start with an MSH segment")
    separator = text[3]
    end = text.find("\r")
    segment = text if end < 0 else text[:end]
    newline = segment.find("\n")  # some senders end segments with LF; the MSH ends there too
    if newline >= 0:
        segment = segment[:newline]
    fields = segment.split(separator)
    encoding = fields[1] if len(fields) > 1 else ""
    if (separator, encoding) not in _VALID_DELIMITERS:
        _check_delimiters(separator, encoding)
    if len(fields) < 18:
        fields += [""] * (18 - len(fields))
    return Msh(
        field_separator=separator,
        encoding_characters=encoding,
        sending_application=fields[2],
        sending_facility=fields[3],
        receiving_application=fields[4],
        receiving_facility=fields[5],
        message_type=fields[8],
        control_id=fields[9],
        processing_id=fields[10],
        version=fields[11],
        character_set=fields[17],
    )


# Delimiter sets already found valid: almost every sender uses "|^~\&", so the check runs once.
_VALID_DELIMITERS: set[tuple[str, str]] = {("|", "^~\\&"), ("|", "^~\\&#")}


def _check_delimiters(separator: str, encoding: str) -> None:
    """MSH-1/MSH-2 (HL7 v2.5.1 2.14.9.1-2): component, repetition, escape, subcomponent (+ truncation
    since v2.7) characters, all distinct, none alphanumeric or white space, none equal to MSH-1."""
    if separator.isalnum() or separator.isspace():
        raise ValueError(f"MSH-1 field separator {separator!r} is not a valid delimiter")
    if (
        len(encoding) not in (4, 5)
        or len(set(encoding)) != len(encoding)
        or separator in encoding
        or any(char.isalnum() or char.isspace() for char in encoding)
    ):
        raise ValueError(f"MSH-2 encoding characters {encoding!r} are not valid (expected e.g. '^~\\&')")
    if len(_VALID_DELIMITERS) < 64:
        _VALID_DELIMITERS.add((separator, encoding))


def salvage_control_id(text: str) -> str:
    """MSH-10 by plain position when the MSH is too broken to parse; empty when there is none."""
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    fields = text.split("\r", 1)[0].split(text[3])
    return fields[9].strip() if len(fields) > 9 else ""


def escape(text: str, separator: str = "|", encoding_characters: str = "^~\\&") -> str:
    """Escape ``text`` for a field value in the sender's own delimiters (HL7 v2.5.1 section 2.7:
    ``\\F\\ \\S\\ \\R\\ \\E\\ \\T\\``); line breaks fold to spaces."""
    component, repetition, escape_char, subcomponent = encoding_characters[:4]
    out = text.replace(escape_char, f"{escape_char}E{escape_char}")
    for char, code in ((separator, "F"), (component, "S"), (repetition, "R"), (subcomponent, "T")):
        out = out.replace(char, f"{escape_char}{code}{escape_char}")
    return out.replace("\r", " ").replace("\n", " ")


class _Clock:
    """MSH-7 timestamps and unique ACK control ids (MSH-10), formatted once per second not per message."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""
        self._prefix = f"Y{int(time.time()) & 0xFFFFFFF:07X}"  # distinct across listener restarts
        self._counter = 0

    def stamp(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y%m%d%H%M%S%z", time.localtime(now))
        return self._stamp

    def next_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}{self._counter}"  # <= 20 characters, the MSH-10 length of v2.5.1


class AckBuilder:
    """A receiving application's original-mode acknowledgments (HL7 v2.5.1 2.9.2), as text.

    The ACK's MSH swaps the sender's and receiver's application and facility (``application`` and
    ``facility`` stand in where the sender left MSH-5/MSH-6 empty), carries ``ACK^<trigger>^ACK`` in
    MSH-9, a unique MSH-10 of its own and the incoming MSH-11/MSH-12; MSA-2 echoes the incoming MSH-10.
    ``versions`` and ``processing_ids`` are what the receiver speaks: a refusal of a message in
    another version or processing ID answers in v2.5.1 and P.
    """

    __slots__ = ("application", "facility", "versions", "processing_ids", "_clock")

    def __init__(self, *, application: str, facility: str, versions: frozenset[str],
                 processing_ids: frozenset[str]) -> None:
        self.application = application
        self.facility = facility
        self.versions = versions
        self.processing_ids = processing_ids
        self._clock = _Clock()

    def accept(self, msh: Msh) -> str:
        """AA for a message that passed the acceptance checks (so its MSH-11/MSH-12 are ones we speak)."""
        sep = msh.field_separator
        header = self._header(msh, msh.processing_id or "P", msh.version or "2.5.1")
        return f"{header}MSA{sep}AA{sep}{msh.control_id}\r"

    def refuse(self, msh: Msh | None, control_id: str, error: tuple[str, str], detail: str, *,
               code: str = "AE") -> str:
        """AE (or ``code``, AR) with ERR-3 ``error`` (table 0357), ERR-4 severity ``E`` and ERR-8 and
        MSA-3 ``detail``; ``msh`` None when the message's MSH could not be read at all."""
        if msh is None:
            # The sender's delimiters are unknown or invalid: answer in the standard ones.
            msh = _UNREADABLE
            control_id = escape(control_id)
        sep, enc = msh.field_separator, msh.encoding_characters
        comp = enc[0]
        processing, version = msh.processing_id or "P", msh.version or "2.5.1"
        if version.split(comp, 1)[0] not in self.versions:
            version = "2.5.1"  # answer in a version we speak, not the unsupported one
        if processing.split(comp, 1)[0] not in self.processing_ids:
            processing = "P"
        text = escape(detail, sep, enc)
        number, name = error
        return (
            f"{self._header(msh, processing, version)}"
            f"MSA{sep}{code}{sep}{control_id}{sep}{text}\r"
            f"ERR{sep}{sep}{sep}{number}{comp}{name}{comp}HL70357{sep}E{sep}{sep}{sep}{sep}{text}\r"
        )

    def _header(self, msh: Msh, processing: str, version: str) -> str:
        sep, enc = msh.field_separator, msh.encoding_characters
        comp = enc[0]
        trigger = msh.trigger_event
        message_type = f"ACK{comp}{trigger}{comp}ACK" if trigger else "ACK"
        clock = self._clock
        return (
            f"MSH{sep}{enc}{sep}{msh.receiving_application or self.application}"
            f"{sep}{msh.receiving_facility or self.facility}{sep}{msh.sending_application}{sep}"
            f"{msh.sending_facility}{sep}{clock.stamp()}{sep}{sep}{message_type}{sep}"
            f"{clock.next_id()}{sep}{processing}{sep}{version}\r"
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgment received for a sent message (MSA segment, HL7 v2.5.1 section 2.15.8).

    ``text`` joins MSA-3 and the ERR segments' user messages / error codes (unescaped);
    ``latency_s`` is the round trip of the exchange that produced this ACK (send to last byte of
    the ACK), ``attempts`` how many exchanges ``send`` needed.
    """

    code: str
    control_id: str
    text: str
    raw: str
    latency_s: float
    attempts: int = 1

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPT_CODES


class AckError(SendError):
    """The peer answered with a negative acknowledgment (MSA-1 AE/AR/CE/CR); ``ack`` is what it sent.

    Always permanent for the message sent: AR/CR is a reject (HL7 v2.5.1 2.9.2, retrying the same
    message cannot help) and AE/CE is an application error in the message's content, which the
    sender has to fix before sending again. ``status`` is the MSA-1 code.
    """

    def __init__(self, message: str, *, ack: Ack) -> None:
        super().__init__(message, permanent=True, status=ack.code)
        self.ack = ack


def parse_ack(raw: str, *, expected_control_id: str, peer: str, latency_s: float = 0.0, attempts: int = 1) -> Ack:
    """Parse an ACK (HL7 v2.5.1 section 2.9, MSA 2.15.8, ERR 2.15.5) and check it answers our message.

    Raises ``SendError`` (not permanent) for an ACK without MSA, with an MSA-1 outside table 0008,
    or whose MSA-2 differs from the sent MSH-10. A negative ACK with an empty MSA-2 is accepted
    as the answer: MLLP is one exchange at a time and a receiver that could not read our MSH cannot
    echo its control id. Does not judge MSA-1; see :func:`check_ack`.
    """
    # python-hl7 only splits segments on CR; tolerate LF-terminated ACKs from sloppy peers.
    text = raw.replace("\r\n", "\r").replace("\n", "\r")
    try:
        message = hl7.parse(text)
    except Exception as exc:  # any parser failure on hostile bytes means the same thing: not an ACK
        raise SendError(f"{peer} answered with an unparsable ACK ({exc}): {preview(raw)!r}") from exc
    try:
        msa = message.segment("MSA")
    except KeyError:
        raise SendError(f"{peer} answered without an MSA segment: {preview(raw)!r}") from None

    def field(segment: hl7.Segment, number: int) -> str:
        return str(segment[number]) if len(segment) > number else ""

    code = field(msa, 1).strip().upper()
    if code not in ACK_CODES:
        raise SendError(f"{peer} answered MSA-1 {code!r}, not an acknowledgment code of HL7 table 0008")
    control_id = field(msa, 2).strip()
    if control_id != expected_control_id and (code in ACCEPT_CODES or control_id):
        raise SendError(
            f"{peer} acknowledged control id {control_id!r} (MSA-2) but the message sent had MSH-10 "
            f"{expected_control_id!r}"
        )
    notes = [message.unescape(field(msa, 3))]  # MSA-3 text message (kept for backward compatibility)
    for err in (segment for segment in message if str(segment[0]) == "ERR"):
        user_message = message.unescape(field(err, 8))  # ERR-8 user message (v2.5)
        error_code = field(err, 3)  # ERR-3 HL7 error code, CWE code^text^table
        legacy = field(err, 1)  # ERR-1 error code and location (v2.4 and older)
        notes.append(user_message or message.unescape(error_code) or message.unescape(legacy))
    return Ack(
        code=code,
        control_id=control_id,
        text="; ".join(dict.fromkeys(note for note in notes if note)),  # receivers often repeat MSA-3 in ERR-8
        raw=raw,
        latency_s=latency_s,
        attempts=attempts,
    )


def check_ack(ack: Ack, *, peer: str) -> Ack:
    """Return ``ack`` when it accepts the message, else raise :class:`AckError` (always permanent)."""
    if ack.code in ACCEPT_CODES:
        return ack
    kind = "rejected" if ack.code in REJECT_CODES else "reported an application error for"
    detail = f": {ack.text}" if ack.text else " (no MSA-3/ERR text)"
    raise AckError(f"{peer} {kind} message {ack.control_id or '?'} ({ack.code}){detail}", ack=ack)


def outgoing_control_id(message: str) -> str:
    """MSH-10 of a message about to be sent; ``SendError`` (permanent) when it has none."""
    try:
        msh = parse_msh(message)
    except ValueError as exc:
        raise SendError(f"cannot send: {exc}", permanent=True) from exc
    if not msh.control_id:
        raise SendError("cannot send: MSH-10 message control id is empty", permanent=True)
    return msh.control_id
