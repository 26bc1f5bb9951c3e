"""Pure generators: plain inputs and a seeded RNG in, HL7 messages / pydicom datasets / files out.

Nothing in this package imports Django or opens a socket (see STYLE.md). The ORM catalog in
``exams`` converts its rows to the frozen dataclasses of :mod:`generators.types` before calling
in here, so everything below can be used and tested without a database.
"""
