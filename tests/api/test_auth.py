"""API keys: both header forms of the spec, 401/403, hashing, revocation, the command and admin."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke, hash_key

EXAMS_URL = "/api/simulator/exams"


def test_it_accepts_the_key_in_the_x_api_key_header(catalog, client_with_key: APIClient) -> None:
    response = client_with_key.get(EXAMS_URL)
    assert response.status_code == 200
    assert response.json()["count"] == len(catalog["exams"])


def test_it_accepts_the_key_as_authorization_apikey(catalog, api_key: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"ApiKey {api_key}")
    response = client.post("/api/simulator/exams/select", {"modality": "MR", "patient_age": 42}, format="json")
    assert response.status_code == 200
    assert response.json()["modality"] == "MR"


def test_it_answers_401_with_a_www_authenticate_hint_without_credentials(catalog, anonymous: APIClient) -> None:
    response = anonymous.get(EXAMS_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("ApiKey ")
    assert 'header="X-API-Key"' in response["WWW-Authenticate"]
    assert response.json()["error"]["code"] == "not_authenticated"


def test_it_answers_401_for_an_unknown_key(catalog, anonymous: APIClient) -> None:
    anonymous.credentials(HTTP_X_API_KEY="yk_" + "x" * 43)
    response = anonymous.get(EXAMS_URL)
    assert response.status_code == 401
    assert response.json()["error"] == {"code": "authentication_failed", "message": "Unknown or revoked API key.",
                                        "details": None}


def test_it_answers_401_for_a_revoked_key(catalog) -> None:
    key, raw = api_key_create(name="old")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get(EXAMS_URL).status_code == 200
    api_key_revoke(key=key)
    response = client.get(EXAMS_URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("header", ["ApiKey", "ApiKey a b", "apikey    "])
def test_it_answers_401_for_a_malformed_authorization_header(catalog, anonymous: APIClient, header: str) -> None:
    anonymous.credentials(HTTP_AUTHORIZATION=header)
    response = anonymous.get(EXAMS_URL)
    assert response.status_code == 401
    assert "ApiKey" in response.json()["error"]["message"]


def test_it_answers_401_for_an_empty_x_api_key_header(catalog, anonymous: APIClient) -> None:
    anonymous.credentials(HTTP_X_API_KEY="")
    response = anonymous.get(EXAMS_URL)
    assert response.status_code == 401
    assert "X-API-Key header is empty" in response.json()["error"]["message"]


def test_it_answers_403_when_a_valid_key_tries_a_staff_write(client_with_key: APIClient) -> None:
    response = client_with_key.post("/api/simulator/endpoints", {"name": "pacs", "kind": "storage", "host": "h",
                                                                  "port": 104, "ae_title": "PACS"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "API keys are read/run only" in response.json()["error"]["message"]


def test_it_answers_403_to_a_logged_in_user_who_is_not_staff(user_client: APIClient) -> None:
    # The browsable API is for staff: a session of anyone else reads and writes nothing.
    response = user_client.get("/api/simulator/endpoints")
    assert response.status_code == 403
    assert "log in as a staff user" in response.json()["error"]["message"]
    response = user_client.post("/api/simulator/scenarios", {"name": "x", "steps": []}, format="json")
    assert response.status_code == 403


def test_it_stores_only_a_hash_of_the_key(db) -> None:
    key, raw = api_key_create(name="ci")
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith("yk_") and len(raw) > 40
    assert stored.key_hash == hash_key(raw) != raw
    assert raw not in {str(v) for v in ApiKey.objects.values_list(flat=False).get(pk=key.pk)}
    assert stored.prefix == raw[:11]


def test_it_records_when_a_key_was_last_used(catalog, api_key: str, client_with_key: APIClient) -> None:
    assert ApiKey.objects.get().last_used_at is None
    client_with_key.get(EXAMS_URL)
    assert ApiKey.objects.get().last_used_at is not None


def test_it_never_logs_a_rejected_key(catalog, anonymous: APIClient, caplog: pytest.LogCaptureFixture) -> None:
    secret = "yk_ThisIsTheSecretPartOfTheKey0123456789abcdef"
    anonymous.credentials(HTTP_X_API_KEY=secret)
    with caplog.at_level(logging.DEBUG):
        anonymous.get(EXAMS_URL)
    assert "rejected API key yk_ThisIsTh" in caplog.text
    assert "SecretPart" not in caplog.text


def test_create_api_key_prints_a_working_key_once(catalog) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "ci-pipeline", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert ApiKey.objects.get().name == "ci-pipeline"
    assert raw not in err.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"ApiKey {raw}")
    assert client.get(EXAMS_URL).status_code == 200


def test_create_api_key_rejects_an_unknown_owner(db) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("create_api_key", "x", "--owner", "nobody", stdout=io.StringIO(), stderr=io.StringIO())


def test_admin_shows_a_new_key_once_and_revokes_keys(catalog, admin_client) -> None:
    response = admin_client.post(reverse("admin:apikeys_apikey_add"), {"name": "from-admin", "owner": ""},
                                 follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    key = ApiKey.objects.get(name="from-admin")
    raw = next(word for m in shown for word in m.split() if word.startswith("yk_"))
    assert hash_key(raw) == key.key_hash
    # Shown once: the change page does not show it again.
    page = admin_client.get(reverse("admin:apikeys_apikey_change", args=[key.pk])).content.decode()
    assert raw not in page and key.prefix in page

    admin_client.post(reverse("admin:apikeys_apikey_changelist"),
                      {"action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    assert client.get(EXAMS_URL).status_code == 401
