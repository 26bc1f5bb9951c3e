"""Wire protocols: MLLP for HL7 v2 and DIMSE (pynetdicom) for DICOM.

Transport code knows bytes and pydicom datasets, never ORM models. Every sender raises
:class:`~simulations.transport.errors.SendError` and nothing else for a failed exchange.
"""
