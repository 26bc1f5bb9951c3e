"""API key workflows: create (the clear key is returned once), revoke, and authenticate."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.utils import timezone

from apikeys.models import ApiKey

KEY_PREFIX = "yk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8
# Writing last_used_at on every request would turn every read into a write; a minute is precise
# enough to tell which keys are still in use.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
MAX_KEY_LENGTH = 200


def hash_key(raw_key: str) -> str:
    """Hex SHA-256 of the key as sent by the client."""
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key_material(key: ApiKey) -> str:
    """Give an unsaved ``key`` a fresh random key (prefix and hash set); returns the clear key."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key.prefix = raw_key[:PREFIX_LENGTH]
    key.key_hash = hash_key(raw_key)
    return raw_key


def api_key_create(*, name: str, owner=None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the clear key, which is never stored nor shown again."""
    key = ApiKey(name=name, owner=owner)
    raw_key = new_key_material(key)
    key.full_clean()
    key.save()
    return key, raw_key


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke a key from now on (idempotent: the first revocation time is kept)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
    return key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None (unknown, malformed or revoked).

    Narrows by the clear prefix, then compares hashes in constant time, so response times do not
    reveal how much of a guessed key was right. Records the last use (at most once a minute).
    """
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > MAX_KEY_LENGTH:
        return None
    digest = hash_key(raw_key)
    match = None
    for candidate in ApiKey.objects.filter(prefix=raw_key[:PREFIX_LENGTH]):
        if hmac.compare_digest(candidate.key_hash, digest):
            match = candidate
    if match is None or match.revoked_at is not None:
        return None
    now = timezone.now()
    if match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=match.pk).update(last_used_at=now)
        match.last_used_at = now
    return match
