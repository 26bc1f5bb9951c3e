"""Fixtures of the API tests: API keys, clients with each credential form, a bigger catalog."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rest_framework.test import APIClient

from tests.exams.documents import exam_entry, small_catalog
from tests.examples import EXAMS


@pytest.fixture
def api_key(db) -> str:
    from apikeys.services import api_key_create

    return api_key_create(name="tests")[1]


@pytest.fixture
def client_with_key(api_key: str) -> APIClient:
    """A client sending ``X-API-Key: KEY`` (the spec's first curl example)."""
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_client(db, django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("curator", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def user_client(db, django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("viewer", password="pw")
    client = APIClient()
    client.force_login(user)
    return client


def bigger_catalog(copies: int) -> dict:
    """The small catalog plus ``copies`` variants of every example exam (distinct ids and codes)."""
    doc = small_catalog()
    for n in range(copies):
        for exam in EXAMS.values():
            entry = exam_entry(replace(exam, id=f"{exam.id}-V{n}"))
            doc["exams"].append(entry)
    return doc
