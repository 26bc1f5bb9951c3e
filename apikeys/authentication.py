"""DRF authentication by API key, in the two header forms of the simulator spec's curl examples.

``X-API-Key: KEY`` and ``Authorization: ApiKey KEY``. The key itself is never logged: failures name
the header form and at most the key's public prefix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from apikeys.models import ApiKey
from apikeys.services import PREFIX_LENGTH, api_key_authenticate
from yeeter.logfilters import QUERY_KEY_PARAMS

logger = logging.getLogger(__name__)

KEYWORD = "ApiKey"
HEADER = "X-API-Key"


@dataclass(frozen=True)
class ApiKeyClient:
    """``request.user`` for a request authenticated by key: an automation client, never staff.

    Keys are read/run credentials; writes that need staff go through a logged-in session, so a
    leaked key cannot change scenarios or endpoints whoever created it.
    """

    key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None
    id: None = None

    @property
    def username(self) -> str:
        return f"apikey:{self.key.name}"

    def __str__(self) -> str:
        return self.username

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False


# A key in a URL is written to every access log, proxy log and browser history it passes: the query
# parameters clients try for it are refused (401), never read, and scrubbed from our own log lines
# (yeeter.logfilters.ScrubQueryKeys).


def _raw_key(request: Request) -> tuple[str, str] | None:
    """(header form, key) from the request, or None when neither header is present."""
    for name in QUERY_KEY_PARAMS:
        if name in request.query_params:
            raise exceptions.AuthenticationFailed(
                f"API keys are not taken in the URL (?{name}=): send it as '{HEADER}: KEY'. A key in a URL "
                "ends up in logs and browser history: revoke this one and create a new key.")
    header = request.META.get("HTTP_X_API_KEY")
    if header is not None:
        return HEADER, header.strip()
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() != KEYWORD.lower().encode():
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed(
            f"Malformed Authorization header: use 'Authorization: {KEYWORD} KEY' with the key and nothing else."
        )
    try:
        return "Authorization", parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("The API key contains characters an API key never has.") from None


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates ``X-API-Key: KEY`` or ``Authorization: ApiKey KEY``; unknown or revoked keys are a 401."""

    def authenticate(self, request: Request) -> tuple[ApiKeyClient, ApiKey] | None:
        found = _raw_key(request)
        if found is None:
            return None
        form, raw_key = found
        if not raw_key:
            raise exceptions.AuthenticationFailed(f"The {form} header is empty: send the API key in it.")
        if not raw_key.isascii() or not raw_key.isprintable():
            # Keys are URL-safe ASCII; a NUL would also be refused by PostgreSQL in the lookup (a 500).
            raise exceptions.AuthenticationFailed("The API key contains characters an API key never has.")
        key = api_key_authenticate(raw_key)
        if key is None:
            # The prefix is public (shown in admin); the rest of the key never reaches a log.
            logger.warning("rejected API key %s… from the %s header", raw_key[:PREFIX_LENGTH], form)
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyClient(key), key

    def authenticate_header(self, request: Request) -> str:
        # RFC 9110 §11.6.1: a 401 names the scheme the client should use.
        return f'{KEYWORD} realm="yeeter", header="{HEADER}"'
