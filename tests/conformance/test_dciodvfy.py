"""Every active exam of the shipped catalog generates DICOM that the independent validators accept.

One small study per active exam (at most two instances per series) is written without the network,
exactly as the runner's GENERATE_DICOM step writes it (with its default documents: the dose report); dicom3tools' ``dciodvfy`` checks one file per
series against its IOD (PS3.3 Annex A) and ``dcentvfy`` checks each study's entity consistency
(patient/study/series attributes equal in every instance). Neither may report an error or a warning
that comes from our values; the only tolerated messages are the dictionary-age warnings listed in
:data:`DICTIONARY_AGE` (documented in the README, "DICOM conformance").
"""

from __future__ import annotations

import datetime as dt
import random
import re
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from generators.types import ExamInfo
from tests.conftest import require_binary
from tests.examples import FIXED_NOW, INDICATION, PATIENT
# dcentvfy classes a document's Accession Number in its Referenced Request Sequence apart from the images'
# (same value; explained where the SR objects are tested)
from tests.generators.test_sr_objects import _DCENTVFY_ARTEFACT

pytestmark = pytest.mark.interop

# Warnings that come from dciodvfy's own dictionary being older or stricter than the current standard,
# not from our values; each is named and explained in the README ("DICOM conformance").
DICTIONARY_AGE: tuple[re.Pattern[str], ...] = ()

_PROBLEM = re.compile(r"^(Error|Warning)", re.MULTILINE)


def _allowed(line: str) -> bool:
    return any(p.search(line) for p in DICTIONARY_AGE)


def _problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if _PROBLEM.match(line) and not _allowed(line)]


def check_exam(exam: ExamInfo, out_dir: Path, dciodvfy: str, dcentvfy: str) -> list[str]:
    """Generate one study of ``exam`` and return every validator problem, each prefixed with where it is."""
    from generators.identity import mint_order
    from simulations.documents import DocumentChoice, document_seed, write_study_with_documents

    order = mint_order(exam=exam, patient=PATIENT, indication=INDICATION, rng=random.Random(exam.id),
                       now=FIXED_NOW)
    # with the documents a step makes by default: the dose report of an ionising-radiation study
    study = write_study_with_documents(order, out_dir, seed=11, now=FIXED_NOW + dt.timedelta(minutes=5),
                                       documents=DocumentChoice(), report=None,
                                       doc_seed=document_seed(11, order.study_instance_uid),
                                       max_instances_per_series=2, previews=False, pps_started_at=FIXED_NOW)
    files = sorted(study.study_dir.glob("*.dcm"))
    problems: list[str] = []
    first_per_series: dict[str, Path] = {}
    for path in files:
        first_per_series.setdefault(path.name.split("_", 1)[0], path)
    for series, path in sorted(first_per_series.items()):
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        problems += [f"{exam.id} series {series}: {line}" for line in _problems(run.stdout + run.stderr)]
    run = subprocess.run([dcentvfy, *map(str, files)], capture_output=True, text=True, timeout=60)
    problems += [f"{exam.id} dcentvfy: {line}" for line in _problems(run.stdout + run.stderr)
                 if _DCENTVFY_ARTEFACT not in line]
    return problems


@pytest.mark.timeout(900)  # 160+ exams, two processes: about 4 minutes alone, more on a shared machine
def test_every_active_exam_passes_dciodvfy_and_dcentvfy_without_warnings(db, tmp_path: Path) -> None:
    dciodvfy, dcentvfy = require_binary("dciodvfy"), require_binary("dcentvfy")
    from exams.catalog_io import SHIPPED_CATALOG, load_catalog, read_catalog_file
    from exams.models import ExamSpec

    load_catalog(read_catalog_file(SHIPPED_CATALOG))
    exams = [e.to_info() for e in ExamSpec.objects.filter(active=True).prefetch_related("codes", "series")]
    assert len(exams) >= 30
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = pool.map(check_exam, exams, [tmp_path / e.id for e in exams], [dciodvfy] * len(exams),
                           [dcentvfy] * len(exams))
        problems = [p for result in results for p in result]
    assert not problems, f"{len(problems)} validator problem(s):\n" + "\n".join(problems)
