"""MWL C-FIND: a sequence key holding one zero-length item returns the whole sequence (PS3.4 C.2.2.2.6).

Most modalities ask for the Scheduled Procedure Step that way; before the fix our SCP answered with
an empty item, so Modality, SPS ID, start date/time and station AE title were all missing. Checked
with dcmtk ``findscu`` against our SCP and, for the same query file, against dcmtk ``wlmscpfs`` and
Orthanc's worklists plugin serving the same item.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from generators.terms import Modality
from generators.worklist import build_worklist_item
from simulations.transport.dimse.worklist import WorklistScp, match_worklist_item, publish_worklist_item
from tests.conftest import free_port, require_binary
from tests.dcmtk import DCMTK_ENV
from tests.dcmtk import wlmscpfs as dcmtk_wlmscpfs
from tests.examples import order_for
from tests.orthanc import orthanc

MR = order_for(Modality.MR)
ITEM = build_worklist_item(MR)
SPS_VALUES = ("Modality", "ScheduledProcedureStepID", "ScheduledProcedureStepStartDate",
              "ScheduledProcedureStepStartTime", "ScheduledStationAETitle")


def empty_item_query() -> Dataset:
    """What a modality sends: patient keys plus (0040,0100) with one zero-length item."""
    query = Dataset()
    query.PatientID = ""
    query.PatientName = ""
    query.AccessionNumber = ""
    query.ScheduledProcedureStepSequence = Sequence([Dataset()])
    return query


def test_an_empty_item_in_a_key_sequence_returns_every_attribute_of_the_item() -> None:
    response = match_worklist_item(empty_item_query(), ITEM)

    assert response is not None
    (sps,) = response.ScheduledProcedureStepSequence
    expected = ITEM.ScheduledProcedureStepSequence[0]
    assert {e.keyword for e in sps} == {e.keyword for e in expected}
    for keyword in SPS_VALUES:
        assert sps[keyword].value == expected[keyword].value and sps[keyword].value


def write_query_file(path: Path) -> Path:
    ds = empty_item_query()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False)
    return path


def findscu(port: int, called: str, query_file: Path, out: Path, *keys: str) -> list[Dataset]:
    binary = require_binary("findscu")
    out.mkdir(parents=True, exist_ok=True)
    args = [binary, "-W", "-aec", called, "-aet", "YEETER", "-X", "-od", str(out)]  # registered in Orthanc
    for k in keys:
        args += ["-k", k]
    result = subprocess.run([*args, "127.0.0.1", str(port), str(query_file)], env=DCMTK_ENV,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


@pytest.fixture
def our_scp() -> Iterator[WorklistScp]:
    with WorklistScp(provider=lambda: [ITEM], port=free_port()) as server:
        yield server


@pytest.mark.interop
def test_findscu_sending_an_empty_sps_item_gets_the_modality_and_step_from_our_scp(
    our_scp: WorklistScp, tmp_path: Path
) -> None:
    query = write_query_file(tmp_path / "query.dcm")

    (answer,) = findscu(our_scp.port, our_scp.ae_title, query, tmp_path / "ours")

    (sps,) = answer.ScheduledProcedureStepSequence
    assert sps.Modality == "MR"
    assert sps.ScheduledProcedureStepID == MR.sps_id
    assert sps.ScheduledStationAETitle == MR.station_ae_title
    assert sps.ScheduledProcedureStepStartDate == "20261125"


@pytest.mark.interop
def test_findscu_k_item_path_with_a_modality_key_matches_inside_the_item(our_scp: WorklistScp, tmp_path: Path) -> None:
    query = tmp_path / "query.dcm"
    write_query_file(query)

    found = findscu(our_scp.port, our_scp.ae_title, query, tmp_path / "mr", "(0040,0100)[0].Modality=MR")
    none = findscu(our_scp.port, our_scp.ae_title, query, tmp_path / "ct", "(0040,0100)[0].Modality=CT")

    assert [a.AccessionNumber for a in found] == [MR.accession_number]
    assert none == []


@pytest.mark.interop
def test_our_scp_returns_the_same_sps_values_as_wlmscpfs_for_an_empty_item(our_scp: WorklistScp,
                                                                           tmp_path: Path) -> None:
    query = write_query_file(tmp_path / "query.dcm")
    with dcmtk_wlmscpfs(tmp_path / "worklists", ae_title="DCMTK_WL") as (peer, folder):
        publish_worklist_item(ITEM, folder)
        (reference,) = findscu(peer.port, peer.ae_title, query, tmp_path / "dcmtk")
    (ours,) = findscu(our_scp.port, our_scp.ae_title, query, tmp_path / "ours")

    theirs_sps, our_sps = reference.ScheduledProcedureStepSequence[0], ours.ScheduledProcedureStepSequence[0]
    for keyword in SPS_VALUES:
        assert our_sps.get(keyword) == theirs_sps.get(keyword), keyword
    assert {e.keyword for e in theirs_sps if e.value not in (None, "")} <= {e.keyword for e in our_sps}


@pytest.mark.interop
def test_our_scp_returns_the_same_sps_values_as_orthanc_for_an_empty_item(our_scp: WorklistScp,
                                                                          tmp_path: Path) -> None:
    query = write_query_file(tmp_path / "query.dcm")
    folder = tmp_path / "orthanc-worklists"
    publish_worklist_item(ITEM, folder)
    with orthanc(tmp_path / "orthanc", worklists=folder) as pacs:
        (reference,) = findscu(pacs.peer.port, pacs.peer.ae_title, query, tmp_path / "orthanc-rsp")
    (ours,) = findscu(our_scp.port, our_scp.ae_title, query, tmp_path / "ours")

    theirs_sps, our_sps = reference.ScheduledProcedureStepSequence[0], ours.ScheduledProcedureStepSequence[0]
    for keyword in SPS_VALUES:
        assert our_sps.get(keyword) == theirs_sps.get(keyword) and our_sps.get(keyword), keyword
