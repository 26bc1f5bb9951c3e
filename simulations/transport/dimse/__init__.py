"""DICOM networking (pynetdicom): verification, storage, worklist, MPPS, storage commitment."""
