"""Who may do what: keys and logged-in staff read and run; only staff (by session) write configuration."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apikeys.models import ApiKey


def _by_key(request: Request) -> bool:
    return isinstance(request.auth, ApiKey)


class IsApiClient(BasePermission):
    """An active API key, or a logged-in active staff user (the browsable API): reads, previews and runs."""

    message = "Authenticate with an API key, or log in as a staff user."

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        return _by_key(request) or bool(user.is_staff)


class StaffWritesOnly(IsApiClient):
    """Reads for any API client; writes only for staff logged in with a session (never by key)."""

    message = "Changing scenarios and endpoints needs a staff user logged in; API keys are read/run only."

    def has_permission(self, request: Request, view) -> bool:
        if not super().has_permission(request, view):
            self.message = IsApiClient.message  # the reason is who they are, not what they tried
            return False
        if request.method in SAFE_METHODS:
            return True
        return bool(request.user.is_staff and not _by_key(request))
