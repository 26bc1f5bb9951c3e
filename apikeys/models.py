"""API keys for automation clients of the simulator API (stored only as a hash)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """A credential for ``X-API-Key: KEY`` / ``Authorization: ApiKey KEY``.

    Only the SHA-256 of the key is stored: keys are 32 random bytes, so a fast hash is as good as a
    slow one here (there is nothing to brute-force). ``prefix`` is the first characters of the key,
    kept in clear so people can tell keys apart and so a lookup narrows to one row before the
    constant-time comparison. A key is never deleted when revoked, so the audit trail stays.
    """

    name = models.CharField(max_length=100, help_text="Who or what uses this key, e.g. ci-pipeline.")
    prefix = models.CharField(max_length=16, editable=False, db_index=True)
    key_hash = models.CharField("SHA-256 of the key", max_length=64, editable=False, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="api_keys", help_text="The person responsible for this key (optional).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…{', revoked' if self.revoked_at else ''})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
