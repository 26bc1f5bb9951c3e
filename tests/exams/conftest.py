from __future__ import annotations

import pytest

from exams.catalog_io import load_catalog
from tests.exams.documents import small_catalog


@pytest.fixture
def catalog(db):
    """The small test catalog loaded into the test database."""
    load_catalog(small_catalog())
    return small_catalog()
