"""SR content items (PS3.3 C.17.3 SR Document Content module, Table C.17.3-1 and its value-type macros).

Each function returns one content item as a :class:`pydicom.Dataset`: Relationship Type (0040,A010),
Value Type (0040,A040), Concept Name Code Sequence (0040,A043) and the value macro of its type
(Table C.17.3-2 TEXT, -3 NUM with Measured Value Sequence and its UCUM units, C.18.x CODE, DATETIME,
UIDREF, PNAME, IMAGE with the SOP Instance Reference macro, CONTAINER with Continuity Of Content).
Children go in ``children`` (Content Sequence, by-value nesting only: no by-reference relationships).

Codes are ``(value, scheme, meaning)`` triples written as PS3.16 lists them; each becomes a Code Sequence
item through :func:`generators.dicom_common.code_item` (this module's :func:`code_item` is the CODE content item).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from generators import dicom_common

CodeTriple = tuple[str, str, str]

# Relationship types (PS3.3 C.17.3.2.4)
CONTAINS = "CONTAINS"
HAS_OBS_CONTEXT = "HAS OBS CONTEXT"
HAS_CONCEPT_MOD = "HAS CONCEPT MOD"
HAS_PROPERTIES = "HAS PROPERTIES"


def _item(relationship: str | None, value_type: str, concept: CodeTriple | None) -> Dataset:
    item = Dataset()
    if relationship is not None:
        item.RelationshipType = relationship
    item.ValueType = value_type
    if concept is not None:
        item.ConceptNameCodeSequence = Sequence([dicom_common.code_item(*concept)])
    return item


def _children(item: Dataset, children: Iterable[Dataset]) -> Dataset:
    kids = list(children)
    if kids:
        item.ContentSequence = Sequence(kids)
    return item


def container(relationship: str | None, concept: CodeTriple, children: Iterable[Dataset] = (), *,
              template: str | None = None) -> Dataset:
    """A CONTAINER (Continuity Of Content SEPARATE); ``template`` fills Content Template Sequence (DCMR)."""
    item = _item(relationship, "CONTAINER", concept)
    item.ContinuityOfContent = "SEPARATE"
    if template is not None:
        tid = Dataset()
        tid.MappingResource = "DCMR"
        tid.TemplateIdentifier = template
        item.ContentTemplateSequence = Sequence([tid])
    return _children(item, children)


def text(relationship: str, concept: CodeTriple, value: str, children: Iterable[Dataset] = ()) -> Dataset:
    item = _item(relationship, "TEXT", concept)
    item.TextValue = value
    return _children(item, children)


def code_item(relationship: str, concept: CodeTriple, value: CodeTriple, children: Iterable[Dataset] = ()
              ) -> Dataset:
    item = _item(relationship, "CODE", concept)
    item.ConceptCodeSequence = Sequence([dicom_common.code_item(*value)])
    return _children(item, children)


def num(relationship: str, concept: CodeTriple, value: Decimal | int, unit: CodeTriple,
        children: Iterable[Dataset] = ()) -> Dataset:
    """A NUM item; ``unit`` is a UCUM code (scheme ``UCUM``) as PS3.16 CID 82 and the templates name it."""
    item = _item(relationship, "NUM", concept)
    measured = Dataset()
    measured.NumericValue = _ds(value)
    measured.MeasurementUnitsCodeSequence = Sequence([dicom_common.code_item(*unit)])
    item.MeasuredValueSequence = Sequence([measured])
    return _children(item, children)


def _ds(value: Decimal | int) -> str:
    """A Decimal String (PS3.5 DS, 16 characters at most) without exponent or float noise."""
    text_value = format(Decimal(value).normalize(), "f")
    if len(text_value) > 16:
        raise ValueError(f"{value} does not fit a 16-character Decimal String")
    return text_value


def datetime_item(relationship: str, concept: CodeTriple, value: dt.datetime) -> Dataset:
    item = _item(relationship, "DATETIME", concept)
    item.DateTime = dicom_common.dicom_datetime(value)
    return item


def uidref(relationship: str, concept: CodeTriple, value: str, children: Iterable[Dataset] = ()) -> Dataset:
    item = _item(relationship, "UIDREF", concept)
    item.UID = value
    return _children(item, children)


def pname(relationship: str, concept: CodeTriple, value: str) -> Dataset:
    item = _item(relationship, "PNAME", concept)
    item.PersonName = value
    return item


def image(relationship: str, concept: CodeTriple | None, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An IMAGE item (Image Reference macro, PS3.3 Table 10-3): the referenced instance by class and UID."""
    item = _item(relationship, "IMAGE", concept)
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class_uid
    ref.ReferencedSOPInstanceUID = sop_instance_uid
    item.ReferencedSOPSequence = Sequence([ref])
    return item


def walk(item: Dataset) -> Iterable[Dataset]:
    """Every content item of the tree under (and including) ``item``, depth first, document order."""
    yield item
    for child in item.get("ContentSequence", []):
        yield from walk(child)


def concept_of(item: Dataset) -> CodeTriple | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    c = seq[0]
    return c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning
