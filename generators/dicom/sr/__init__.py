"""The non-image objects of a study: dose reports, key images, and the report as SR and as PDF.

Modules (one IOD each; every module docstring names its PS3.3 IOD and PS3.16 templates):

* :mod:`~generators.dicom.sr.dose` — X-Ray Radiation Dose SR (A.35.8): TID 10011 for CT, TID 10001 for
  DX/CR/MG, TID 10011 for the CT series of a PET/CT (:func:`~generators.dicom.sr.dose.build_dose_sr` picks;
  ``None`` for MR/US/NM).
* :mod:`~generators.dicom.sr.fluoro` — the same IOD for XA/RF: TID 10001 with fluoroscopy and acquisition events.
* :mod:`~generators.dicom.sr.radiopharmaceutical` — Radiopharmaceutical Radiation Dose SR (A.35.14), TID 10021,
  for PET.
* :mod:`~generators.dicom.sr.kos` — Key Object Selection Document (A.35.4), TID 2010.
* :mod:`~generators.dicom.sr.text` — Basic Text SR (A.35.1), TID 2000, the signed report.
* :mod:`~generators.dicom.sr.pdf` — Encapsulated PDF (A.45.1), the same report as a PDF.
* :mod:`~generators.dicom.sr.document` — the input records (:class:`ImageRef`, :class:`AcquiredSeries`,
  :class:`StudyContext`, :class:`DocumentSeries`), the Patient/Study modules shared with the images,
  and :func:`write_part10` (atomic PS3.10 file).
* :mod:`~generators.dicom.sr.items` — SR content item builders.
* :mod:`~generators.dicom.sr.bundle` — :func:`build_study_documents`: all of the above for one study.

Wiring
------
How the runner calls these (wired by :mod:`simulations.documents`, called from ``GENERATE_DICOM``; nothing
here touches the ORM, the network or the images):

1. After ``GENERATE_DICOM`` (``write_study`` / ``iter_study``), build the context from the instance records
   the generator yielded — never by globbing or re-reading headers::

       study = study_context(order, records, started_at=now_used_for_the_images,
                             mpps_uid=ctx.mpps_uid, manufacturer_model=...)

   ``started_at`` must be the ``now`` passed to ``write_study`` (it is the images' Study Date/Time).
   ``write_study`` returns only a summary today: collect the records with ``on_instance=records.append``
   (or add them, and each series' acquisition time, to ``StudyResult``/``SeriesRecord``; then
   :func:`~generators.dicom.sr.document.study_context` can drop its copy of the series spacing rule).
2. Draw every document UID and value from the patient's plan RNG (``ctx.rng``) or a stream derived from
   it — **never** ``random.Random(pixel_seed)``: that is the image generator's UID stream, and reusing it
   mints the images' own Series/SOP UIDs again (dcentvfy catches it; the tests show how). Each document
   gets a :class:`DocumentSeries` of its own: new Series and SOP Instance UIDs and a series number after
   the protocol's (:data:`~generators.dicom.sr.bundle.SERIES_NUMBERS`: 990 dose, 991 KOS, 992 text SR,
   993 PDF, 994 radiopharmaceutical dose).
3. Build them all with ``build_study_documents(order, study, rng=..., now=..., report=report)``: the dose
   report of every CT/DX/CR/MG/XA/RF/PT study, the KOS, and — given the :class:`~generators.reports.Report` the
   ORU^R01 carries (build it once, in the plan, and hand it to both) — the text SR and the PDF. The
   single builders (``build_dose_sr``, ``build_kos``, ``build_text_sr``, ``build_encapsulated_pdf``) are
   there for a step that makes only one of them.
4. Write each with ``write_part10(document.dataset, study_dir / document.file_name)`` beside the images
   (``<series>_0001.dcm``, series 990-994): the name keeps the runner's ``<series>_<instance>.dcm``
   convention so ``_performed_series`` and the sender pick them up; the study's series list needs a
   ``SeriesRecord`` for each (modality SR/KO/DOC), and previews none.
5. Send them after the images in the same C-STORE association: ``send_instances`` proposes contexts for
   the SOP classes of the files it is given and the built-in Storage SCP accepts every storage class, so
   nothing changes there (dcmtk storescp stores all four, ``tests/generators/test_sr_objects.py``). Include
   them in the MPPS N-SET Performed Series Sequence
   (the dose SR, KOS and SR are evidence of the procedure step; PS3.3 C.4.15 puts non-image instances in
   Referenced Non-Image Composite SOP Instance Sequence, not Referenced Image Sequence) and in the storage
   commitment request; verification compares their identity like the images'. The text SR and PDF are
   made at report time (``SEND_REPORT``), so they go in a second association after the report, or with the
   images if the report is made first.
"""

from __future__ import annotations

from generators.dicom.sr.bundle import SERIES_NUMBERS, StudyDocument, build_study_documents
from generators.dicom.sr.document import (
    AcquiredSeries,
    DocumentSeries,
    ImageRef,
    StudyContext,
    study_context,
    write_part10,
)
from generators.dicom.sr.dose import build_ct_dose_sr, build_dose_sr, build_projection_dose_sr
from generators.dicom.sr.fluoro import build_fluoro_dose_sr
from generators.dicom.sr.kos import build_kos, choose_key_images
from generators.dicom.sr.pdf import build_encapsulated_pdf
from generators.dicom.sr.radiopharmaceutical import build_radiopharmaceutical_dose_sr
from generators.dicom.sr.text import build_text_sr

__all__ = [
    "SERIES_NUMBERS", "AcquiredSeries", "DocumentSeries", "ImageRef", "StudyContext", "StudyDocument",
    "build_ct_dose_sr", "build_dose_sr", "build_encapsulated_pdf", "build_fluoro_dose_sr", "build_kos",
    "build_projection_dose_sr", "build_radiopharmaceutical_dose_sr",
    "build_study_documents", "build_text_sr", "choose_key_images", "study_context", "write_part10",
]
