"""Modality Worklist over DIMSE: a C-FIND SCP, a C-FIND SCU and ``.wl`` publishing.

* :class:`WorklistScp` - our built-in Basic Worklist Management SCP (PS3.4 Annex K) serving the
  Modality Worklist Information Model - FIND with the matching rules of PS3.4 C.2.2.2 (see
  :func:`match_worklist_item`); it also answers C-ECHO.
* :func:`publish_worklist_item` - drop a ``.wl`` file into the folder an external dcmtk
  ``wlmscpfs`` or Orthanc worklist plugin serves.
* :func:`find_worklist` - a C-FIND SCU against any MWL SCP, used to verify an entry is visible.

Matching rules implemented (PS3.4 C.2.2.2), and the choices the standard leaves to the SCP:

* Single value matching (C.2.2.2.1) is case-sensitive, except PN: person names match ignoring
  case and accents and trailing empty components ("nunez^zoe" finds "NÚÑEZ^ZOË^^"), which the
  standard allows and which operators typing on an ASCII console need.
* Wildcards ``*`` and ``?`` (C.2.2.2.4) for AE, CS, LO, LT, PN, SH, ST, UC, UR, UT; a lone ``*``
  is universal matching for every VR.
* Universal matching (C.2.2.2.3): a zero-length key matches everything, also an empty value.
  A non-empty key never matches an entity whose value is empty.
* UID list matching (C.2.2.2.2): backslash-separated UIDs, any of them matches.
* Range matching (C.2.2.2.5) for DA, TM and DT: ``A-B``, ``A-``, ``-B``; a partial time (``10``,
  ``1030``) covers its whole hour/minute. A Date key and its sibling Time key (``...Date`` /
  ``...Time`` at the same level, e.g. ScheduledProcedureStepStartDate/Time) that both carry a
  value are matched as one combined datetime range (C.2.2.2.5.1): date ``20261125-20261126``
  with time ``1800-0800`` means 25 Nov 18:00 to 26 Nov 08:00, not 18:00-08:00 on each day.
* Sequence matching (C.2.2.2.6): a key sequence holds one item whose keys are matched against
  each item of the entity's sequence; matching items are returned. A key sequence with zero
  items, or with one zero-length item (the form most modalities send for
  ScheduledProcedureStepSequence), is universal matching of the sequence: every item is
  returned whole, as dcmtk ``wlmscpfs`` and Orthanc answer it.

Only requested keys are returned (absent ones zero length), plus Specific Character Set.
Statuses: 0xFF00 pending per match, 0x0000 at the end, 0xFE00 after C-CANCEL, 0xA900 for an
identifier that is not a worklist identifier (undecodable, a key sequence with several items),
0xC000 for key values the SCP cannot interpret (malformed dates, lists outside UI), 0xC001 when
the worklist source fails. Nothing raises across the wire.

Size (over the ~400 lines of simulations/): the matching rules above and their implementation
(:func:`match_worklist_item`) belong side by side; the SCP, the SCU and the folder publisher are thin.
"""

from __future__ import annotations

import copy
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from generators.vr import clip
from generators.worklist import write_worklist_file
from simulations.transport.dimse.common import DicomPeer, PynetdicomScp, associate
from simulations.transport.errors import SendError

logger = logging.getLogger(__name__)

# PS3.4 Table K.4-1 / C.4.1.1.4 C-FIND statuses.
SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
CANCELLED = 0xFE00
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
UNABLE_TO_PROCESS = 0xC000
SOURCE_FAILED = 0xC001  # in the 0xCxxx "unable to process" range: our provider raised

# PS3.4 C.2.2.2.4: VRs on which * and ? are wildcards.
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "DS", "IS"})
_SPECIFIC_CHARACTER_SET_TAG = 0x00080005

WorklistProvider = Callable[[], Iterable[Dataset]]


class QueryError(ValueError):
    """The identifier cannot be processed; ``status`` is the C-FIND failure status to answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


# --- matching (PS3.4 C.2.2.2) -------------------------------------------------------------


def match_worklist_item(query: Dataset, item: Dataset) -> Dataset | None:
    """The C-FIND response identifier for ``item`` if it matches ``query``, else None.

    Implements PS3.4 C.2.2.2 as summarised in the module docstring; the response holds exactly
    the query's keys (values from ``item``, zero length where ``item`` has none) plus the item's
    Specific Character Set. Raises :class:`QueryError` for an identifier it cannot process.
    """
    response = _match_level(query, item)
    if response is None:
        return None
    if "SpecificCharacterSet" in item:
        response.SpecificCharacterSet = item.SpecificCharacterSet
    return response


def _values(elem: DataElement | None) -> list[str]:
    if elem is None or elem.value is None or elem.value == "":
        return []
    if isinstance(elem.value, MultiValue | list | tuple):
        return [str(v) for v in elem.value if v is not None and str(v) != ""]
    return [str(elem.value)]


def _is_universal(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return all(_all_universal(sub) for sub in elem.value or [])
    values = _values(elem)
    return not values or values == ["*"]


def _all_universal(ds: Dataset) -> bool:
    return all(_is_universal(elem) for elem in ds if _is_key(elem))


def _is_key(elem: DataElement) -> bool:
    # Command/meta groups, group lengths, private tags and the character set are not keys.
    tag = elem.tag
    return not (
        tag.group in (0x0000, 0x0002) or tag.element == 0x0000 or tag.is_private or tag == _SPECIFIC_CHARACTER_SET_TAG
    )


def _date_time_pairs(query: Dataset) -> dict[int, int]:
    """Tags of Date keys whose sibling Time key is also a non-universal key: matched combined."""
    pairs: dict[int, int] = {}
    for elem in query:
        if elem.VR != "DA" or not elem.keyword.endswith("Date") or _is_universal(elem):
            continue
        time_keyword = elem.keyword[: -len("Date")] + "Time"
        time_elem = query.data_element(time_keyword) if time_keyword in query else None
        if time_elem is not None and time_elem.VR == "TM" and not _is_universal(time_elem):
            pairs[int(elem.tag)] = int(time_elem.tag)
    return pairs


def _match_level(query: Dataset, item: Dataset) -> Dataset | None:
    response = Dataset()
    pairs = _date_time_pairs(query)
    paired_times = set(pairs.values())
    for qelem in query:
        if not _is_key(qelem):
            continue
        ielem = item[qelem.tag] if qelem.tag in item else None
        if qelem.VR == "SQ":
            matched = _match_sequence(qelem, ielem)
            if matched is None:
                return None
            response.add(DataElement(qelem.tag, "SQ", matched))
            continue
        tag = int(qelem.tag)
        if tag in pairs:
            time_tag = pairs[tag]
            if not _match_date_time(qelem, query[time_tag], ielem, item[time_tag] if time_tag in item else None):
                return None
        elif tag not in paired_times and not _match_value(qelem, ielem):
            return None
        if ielem is not None:
            response.add(copy.deepcopy(ielem))
        else:
            response.add(DataElement(qelem.tag, qelem.VR, None))
    return response


def _match_sequence(qelem: DataElement, ielem: DataElement | None) -> Sequence | None:
    entity_items: list[Dataset] = list(ielem.value or []) if ielem is not None and ielem.VR == "SQ" else []
    key_items = qelem.value or []
    if len(key_items) == 0:
        return Sequence(copy.deepcopy(entity_items))
    if len(key_items) > 1:
        raise QueryError(
            f"key sequence {qelem.keyword or qelem.tag} has {len(key_items)} items; PS3.4 C.2.2.2.6 allows one",
            status=IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        )
    key_item = key_items[0]
    if not any(_is_key(elem) for elem in key_item):
        return Sequence(copy.deepcopy(entity_items))
    matched = [r for r in (_match_level(key_item, entity_item) for entity_item in entity_items) if r is not None]
    if matched:
        return Sequence(matched)
    if not entity_items and _all_universal(key_item):
        return Sequence()
    return None


def _fold_pn(value: str) -> str:
    # Case- and accent-insensitive person name comparison (PS3.4 C.2.2.2.1 allows it for PN).
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold().rstrip("^= ")


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _match_value(qelem: DataElement, ielem: DataElement | None) -> bool:
    keys = _values(qelem)
    if not keys or keys == ["*"]:
        return True  # universal matching (C.2.2.2.3, and C.2.2.2.4 for a lone "*")
    vr = qelem.VR
    name = qelem.keyword or str(qelem.tag)
    if len(keys) > 1 and vr != "UI":
        raise QueryError(f"{name}: only UID keys may list several values (PS3.4 C.2.2.2.2)", status=UNABLE_TO_PROCESS)
    values = _values(ielem)
    if not values:
        return False
    if vr == "UI":
        return any(v in keys for v in values)
    key = keys[0]
    if vr in _RANGE_VRS:
        low, high = _range(key, vr, name)
        points = [p for p in (_point(v, vr) for v in values) if p is not None]
        return any(low <= p <= high for p in points)
    if vr in _NUMERIC_VRS:
        try:
            number = float(key)
        except ValueError:
            raise QueryError(f"{name}: {key!r} is not a number", status=UNABLE_TO_PROCESS) from None
        return any(_number(v) == number for v in values)
    if vr == "PN":
        key, values = _fold_pn(key), [_fold_pn(v) for v in values]
    if vr in _WILDCARD_VRS and ("*" in key or "?" in key):
        regex = _wildcard_regex(key)
        return any(regex.fullmatch(v) for v in values)
    return key in values


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# Date/time values are compared as fixed-width strings: DA "YYYYMMDD", TM "HHMMSS.ffffff",
# DT "YYYYMMDDHHMMSS.ffffff". A partial value spans from its lowest to its highest completion.
_DA = re.compile(r"(\d{8})")
_TM = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:[+-]\d{4})?")
_MIN = {"DA": "00000000", "TM": "000000.000000", "DT": "00000101000000.000000"}
_MAX = {"DA": "99991231", "TM": "235959.999999", "DT": "99991231235959.999999"}


def _span(text: str, vr: str) -> tuple[str, str] | None:
    """Lowest and highest normalized instant a (possibly partial) DA/TM/DT value denotes."""
    text = text.strip()
    if vr == "DA":
        return (text, text) if _DA.fullmatch(text) else None
    if vr == "TM":
        m = _TM.fullmatch(text.replace(":", ""))
        if m is None:
            return None
        hh, mm, ss, frac = m.groups()
        if frac is not None and ss is None:
            return None
        return (
            f"{hh}{mm or '00'}{ss or '00'}.{(frac or '').ljust(6, '0')}",
            f"{hh}{mm or '59'}{ss or '59'}.{(frac or '').ljust(6, '9')}",
        )
    m = _DT.fullmatch(text)
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac = m.groups()
    return (
        f"{year}{month or '01'}{day or '01'}{hh or '00'}{mm or '00'}{ss or '00'}.{(frac or '').ljust(6, '0')}",
        f"{year}{month or '12'}{day or '31'}{hh or '23'}{mm or '59'}{ss or '59'}.{(frac or '').ljust(6, '9')}",
    )


def _point(text: str, vr: str) -> str | None:
    span = _span(text, vr)
    return span[0] if span else None


def _range(key: str, vr: str, name: str) -> tuple[str, str]:
    """Bounds of a DA/TM/DT matching key: single value, ``A-B``, ``A-`` or ``-B`` (C.2.2.2.5)."""
    # A hyphen always separates range bounds: DT keys with a "-ZZXX" UTC offset are not supported
    # (offsets are ignored in stored values; the worklist model has no DT keys anyway).
    parts = key.split("-")
    if len(parts) > 2:
        raise QueryError(f"{name}: {key!r} is not a valid {vr} range", status=UNABLE_TO_PROCESS)
    if len(parts) == 1:
        span = _span(parts[0], vr)
        if span is None:
            raise QueryError(f"{name}: {key!r} is not a valid {vr} value", status=UNABLE_TO_PROCESS)
        return span
    low_text, high_text = parts
    if not low_text and not high_text:
        raise QueryError(f"{name}: {key!r} has neither bound", status=UNABLE_TO_PROCESS)
    low_span = _span(low_text, vr) if low_text else (_MIN[vr], _MIN[vr])
    high_span = _span(high_text, vr) if high_text else (_MAX[vr], _MAX[vr])
    if low_span is None or high_span is None:
        raise QueryError(f"{name}: {key!r} is not a valid {vr} range", status=UNABLE_TO_PROCESS)
    return low_span[0], high_span[1]


def _match_date_time(
    qdate: DataElement, qtime: DataElement, idate: DataElement | None, itime: DataElement | None
) -> bool:
    """Combined date-time range matching of a Date/Time key pair (PS3.4 C.2.2.2.5.1)."""
    date_keys, time_keys = _values(qdate), _values(qtime)
    for elem, keys in ((qdate, date_keys), (qtime, time_keys)):
        if len(keys) > 1:
            raise QueryError(f"{elem.keyword}: several values in a range key", status=UNABLE_TO_PROCESS)
    date_low, date_high = _range(date_keys[0], "DA", qdate.keyword)
    time_low, time_high = _range(time_keys[0], "TM", qtime.keyword)
    dates, times = _values(idate), _values(itime)
    if not dates or not times:
        return False
    date_point, time_point = _point(dates[0], "DA"), _point(times[0], "TM")
    if date_point is None or time_point is None:
        return False
    return date_low + time_low <= date_point + time_point <= date_high + time_high


# --- SCP --------------------------------------------------------------------------------------


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = clip(comment)  # LO
    return ds



def handle_find(event: Event, provider: WorklistProvider) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """EVT_C_FIND on the Modality Worklist Information Model (PS3.4 K.4.1.3 SCP behaviour).

    Yields one 0xFF00 pending response per matching item of ``provider()`` then 0x0000, or
    0xFE00 as soon as a C-CANCEL arrived, or a failure status; never raises.
    """
    try:
        query = event.identifier
        _ = list(query)  # force decoding of every element now, inside this try
    except Exception as exc:  # pydicom raises various errors for a malformed identifier
        yield _failure(IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, f"undecodable identifier: {exc}"), None
        return
    try:
        items = iter(provider())
    except Exception:  # the source is the caller's code: report it, do not crash the association
        logger.exception("worklist provider failed while answering a C-FIND")
        yield _failure(SOURCE_FAILED, "the worklist source failed"), None
        return
    while True:
        if event.is_cancelled:
            yield CANCELLED, None
            return
        try:
            item = next(items, None)
        except Exception:
            logger.exception("worklist provider failed while answering a C-FIND")
            yield _failure(SOURCE_FAILED, "the worklist source failed"), None
            return
        if item is None:
            break
        try:
            response = match_worklist_item(query, item)
        except QueryError as exc:
            yield _failure(exc.status, str(exc)), None
            return
        if response is not None:
            yield PENDING, response
    yield SUCCESS, None


class WorklistScp(PynetdicomScp):
    """Our Modality Worklist SCP on ``host:port`` (port 0: any free port, read ``.port``).

    ``provider`` is called once per C-FIND and returns the current worklist items (datasets as
    :func:`generators.worklist.build_worklist_item` makes them). Answers C-ECHO too.
    """

    default_ae_title = "YEETER_MWL"

    def __init__(
        self,
        *,
        provider: WorklistProvider,
        ae_title: str = "YEETER_MWL",
        host: str = "127.0.0.1",
        port: int = 0,
        **limits: float,
    ) -> None:
        """``limits``: ``artim_timeout``, ``network_timeout``, ``dimse_timeout``, ``max_associations``,
        ``max_per_peer`` (see :class:`~simulations.transport.dimse.common.PynetdicomScp`)."""
        super().__init__(ae_title=ae_title, host=host, port=port, **limits)  # type: ignore[arg-type]
        self.provider = provider

    def supported_contexts(self) -> list[str]:
        return [ModalityWorklistInformationFind, Verification]

    def event_handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, handle_find, [self.provider])]


# --- publishing for file-based SCPs --------------------------------------------------------------


def publish_worklist_item(ds: Dataset, folder: Path) -> Path:
    """Publish ``ds`` as ``<folder>/<accession>.wl`` for dcmtk ``wlmscpfs`` / Orthanc.

    ``folder`` is the called-AE-title folder (``wlmscpfs -dfp <root>`` serves ``<root>/<AET>``).
    Creates the folder and the empty ``lockfile`` wlmscpfs insists on; the write is atomic.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lockfile").touch(exist_ok=True)
    return write_worklist_file(ds, folder)


# --- SCU ----------------------------------------------------------------------------------------


def find_worklist(peer: DicomPeer, query: Dataset, *, timeout: float | None = None) -> list[Dataset]:
    """C-FIND ``query`` on the Modality Worklist Information Model of ``peer`` (PS3.4 K.4.1.2).

    Returns the identifiers of all pending responses. Raises :class:`SendError` (with
    ``.status`` for a DIMSE failure status) when the peer is absent, rejects or aborts the
    association, or answers with a non-success final status.
    """
    return c_find(peer, ModalityWorklistInformationFind, query, purpose="worklist C-FIND", timeout=timeout)


def c_find(peer: DicomPeer, model: str, query: Dataset, *, purpose: str,
           timeout: float | None = None) -> list[Dataset]:
    """One C-FIND of ``query`` on information ``model`` (PS3.4 C.4.1 / K.4.1): the identifiers of the
    pending responses (0xFF00/0xFF01) up to Success; any other final status is a :class:`SendError`
    carrying it (transient only for 0xA700 Out of Resources). Shared by every C-FIND SCU here."""
    assoc = associate(peer, [(model, None)], purpose=purpose, timeout=timeout)
    results: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(query, model):
            if "Status" not in status:
                raise SendError(f"{peer} sent no valid C-FIND response (timeout, abort or bad PDU)")
            code = int(status.Status)
            if code in (PENDING, PENDING_WARNING):
                if identifier is not None:
                    results.append(identifier)
            elif code == SUCCESS:
                break
            else:
                comment = status.get("ErrorComment", "")
                raise SendError(
                    f"{peer} answered the {purpose} with status 0x{code:04X}{': ' + comment if comment else ''}",
                    permanent=code != OUT_OF_RESOURCES,
                    status=code,
                )
    finally:
        if assoc.is_established:
            assoc.release()
    return results
