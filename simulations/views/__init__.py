"""The simulator page: catalog → launch form → live run view → one patient's story, and the history.

Views are thin: the catalog through :class:`ExamFactory` and the catalog API's ``FilterSerializer``,
runs through :func:`simulations.apis.run_start_from_input` (the runs API's own validation, so the
form shows the API's messages beside the field at fault), visibility through
:mod:`simulations.selectors` (the one permission rule for REST, WebSocket and pages). Files are read
only from inside the run's folder (:func:`run_path`), never through a symlink.

One module a part of the page: :mod:`.catalog`, :mod:`.launch` (and the endpoints' check),
:mod:`.runs` (run view, cancel, again, history), :mod:`.files` (a run's files, a study's zip) and
:mod:`.patient` (the patient story). ``simulations.page_urls`` routes to the names below.
"""

from __future__ import annotations

from simulations.views.catalog import catalog
from simulations.views.files import run_file, run_path, study_zip
from simulations.views.launch import FULL_CHAIN, START_REFUSALS, endpoint_check_view, launch
from simulations.views.patient import dataset_rows, hl7_lines, patient_story, verification_rows
from simulations.views.runs import again_body, history, run_again, run_cancel_view, run_label, run_view

__all__ = [
    "FULL_CHAIN", "START_REFUSALS", "again_body", "catalog", "dataset_rows", "endpoint_check_view", "history",
    "hl7_lines", "launch", "patient_story", "run_again", "run_cancel_view", "run_file", "run_label", "run_path",
    "run_view", "study_zip", "verification_rows",
]
