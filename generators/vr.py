"""Values made fit for where they go, in one place: DICOM value representations and HL7 escaping.

Free text (an indication typed by a clerk, a name with an apostrophe or a caret, a facility name from a
settings file) reaches the HL7 order, the worklist item, MPPS and every image. Each destination has
characters that mean structure, not text:

* DICOM (PS3.5 §6.2): ``\\`` separates values in every string VR except ST, LT and UT, so one backslash in
  an LO indication turns it into two values (dciodvfy: "Bad attribute Value Multiplicity"); in PN, ``^``
  separates components and ``=`` component groups (§6.2.1); control characters are forbidden except
  ESC in all texts and CR, LF, FF, TAB in the text VRs ST, LT, UT (§6.1.3); every VR has a maximum
  length (characters for the text VRs, bytes for the rest, all of them ASCII here).
* HL7 v2 (2.5.1 §2.7): ``| ^ & ~ \\`` are the delimiters and are written as the escape sequences
  ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``; a segment ends at CR, so line breaks become spaces in single-line types
  and the ``\\.br\\`` formatting command in FT.

:func:`plain` is the part both sides share (control characters out, line breaks normalised).
:func:`clip` cuts a value to its VR's maximum length (the one cut every builder uses),
:func:`dicom_text` cleans one value for its VR, :func:`pn_component` one name component,
:func:`clean_dataset` a whole data set by the VR of each element (the builders call it last, so no
value escapes it), and :func:`hl7_escape` / :func:`hl7_escape_ft` encode for HL7.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName as DicomPersonName

# PS3.5 Table 6.2-1 maximum lengths (characters for LO/SH/ST/LT/UT/PN groups, bytes otherwise).
MAX_LENGTH: dict[str, int] = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "UC": 2**32 - 2,
                              "UT": 2**32 - 2, "UI": 64, "PN": 64, "DS": 16, "IS": 12, "AS": 4, "DA": 8, "TM": 14,
                              "DT": 26}
# VRs whose value may hold several values separated by backslashes (all string VRs but the texts).
MULTI_VALUED: frozenset[str] = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UC", "UI"})
TEXT_VRS: frozenset[str] = frozenset({"ST", "LT", "UT"})
_CHECKED = MULTI_VALUED | TEXT_VRS - {"AS", "DA", "DS", "DT", "IS", "TM"}  # numbers and dates are ours, built exactly

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # all C0/C1 controls but TAB, LF, CR
_BREAKS = re.compile(r"\r\n|\r|\n|\t|\f")
_CS = re.compile(r"[^A-Z0-9 _]")
_UID_CHARS = re.compile(r"[^0-9.]")


def plain(value: object, *, keep_breaks: bool = False) -> str:
    """``value`` as text without control characters; line breaks and tabs become ``\\n`` (``keep_breaks``)
    or single spaces. Unicode is normalised to NFC so an accent is one character everywhere."""
    text = unicodedata.normalize("NFC", str(value))
    text = _CONTROL.sub("", text)
    if keep_breaks:
        return _BREAKS.sub(lambda m: " " if m.group() == "\t" else "\n", text)
    return _BREAKS.sub(" ", text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip()


def clip(value: str, vr: str = "LO") -> str:
    """``value`` cut to the maximum length of ``vr`` (PS3.5 Table 6.2-1), trailing white space of the cut
    dropped (it is padding, §6.2), so strict receivers do not reject it; a value that fits is unchanged."""
    return _clip(value, MAX_LENGTH[vr])


def dicom_text(value: object, vr: str) -> str:
    """One value cleaned for DICOM ``vr`` (PS3.5 §6.2): no control characters (ST/LT/UT keep line breaks
    as CR LF), no backslash where it would split the value (it becomes ``/``), CS upper case of its
    repertoire, UI digits and dots, cut to the VR's maximum length, trailing spaces dropped (they are
    padding, §6.2)."""
    if vr in TEXT_VRS:
        text = plain(value, keep_breaks=True).replace("\n", "\r\n")
    else:
        text = plain(value).replace("\\", "/")
    if vr == "CS":
        text = _CS.sub("_", text.upper())
    elif vr == "UI":
        text = _UID_CHARS.sub("", text)
    elif vr == "PN":
        return person_name_groups(text)
    return _clip(text, MAX_LENGTH.get(vr, 64)).rstrip(" ")


def pn_component(value: object) -> str:
    """One component of a person name (family, given, middle, prefix, suffix) for DICOM PN (PS3.5 §6.2.1):
    ``^`` (component), ``=`` (group) and ``\\`` (value) separators become spaces, so a name never gains
    components or values it did not have."""
    text = plain(value)
    for separator in ("^", "=", "\\"):
        text = text.replace(separator, " ")
    return re.sub(" {2,}", " ", text).strip()


def person_name_groups(value: str) -> str:
    """An already-built PN value checked as a whole: at most 3 groups of at most 5 components, each group at
    most 64 characters, no backslash (§6.2.1)."""
    groups = plain(value).replace("\\", " ").split("=")[:3]
    cleaned = []
    for group in groups:
        components = group.split("^")
        head, tail = components[:4], components[4:]
        if tail:  # more than five components: the extra ones join the last
            head.append(" ".join(tail))
        cleaned.append(_clip("^".join(c.strip() for c in head).rstrip("^"), MAX_LENGTH["PN"]))
    return "=".join(cleaned).rstrip("=")


def _clean_value(value: Any, vr: str) -> Any:
    if isinstance(value, DicomPersonName):
        return person_name_groups(str(value))
    if isinstance(value, str):
        return dicom_text(value, vr)
    return value


def _single_valued(tag: int) -> bool:
    try:
        return dictionary_VM(tag) == "1"
    except KeyError:  # private or unknown: keep what the builder made
        return False


def clean_dataset(ds: Dataset) -> Dataset:
    """Clean every string element of ``ds`` (and of its sequences' items) for its VR, in place; returns ``ds``.

    Multiple values stay multiple, each value cleaned on its own, where the element's dictionary VM allows
    several; where it is 1, a value pydicom split at a backslash is joined again (with ``/``), so a single
    string never becomes several. Dates, times and numbers are left alone: the builders format them exactly.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                clean_dataset(item)
            continue
        if elem.VR not in _CHECKED or elem.value is None:
            continue
        if isinstance(elem.value, (MultiValue, list, tuple)):
            if _single_valued(elem.tag):
                # pydicom split a backslash inside the one value this element may hold: make it one again
                elem.value = _clean_value("/".join(str(v) for v in elem.value), elem.VR)
            else:
                elem.value = [_clean_value(v, elem.VR) for v in elem.value]
        else:
            elem.value = _clean_value(elem.value, elem.VR)
    return ds


_HL7_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"})


def hl7_escape(value: object) -> str:
    """A single-line HL7 value (ST, ID, a component): control characters dropped, line breaks folded to
    spaces, delimiters escaped (HL7 2.5.1 §2.7.4: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``)."""
    return plain(value).translate(_HL7_ESCAPES)


def hl7_escape_ft(value: object) -> str:
    """Formatted text (FT): delimiters escaped as in :func:`hl7_escape`, line breaks as ``\\.br\\`` (§2.7.6)."""
    return plain(value, keep_breaks=True).translate(_HL7_ESCAPES).replace("\n", "\\.br\\")
