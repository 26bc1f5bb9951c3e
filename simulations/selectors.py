"""Which runs a principal may see: the one permission rule for REST, WebSocket and pages.

Staff users see every run. A logged-in user sees the runs they started; an API key sees the runs
started with that key. Runs started by ``runsim`` or admin have no owner: staff only.
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from simulations.models import Run


def _api_key_of(principal):
    """The ApiKey behind ``request.user`` for a key-authenticated request, else None."""
    return getattr(principal, "key", None)


def runs_visible_to(principal) -> QuerySet[Run]:
    """Runs ``principal`` (a Django user, an ``ApiKeyClient`` or an anonymous user) may read and cancel."""
    if principal is None or not getattr(principal, "is_authenticated", False):
        return Run.objects.none()
    if not getattr(principal, "is_active", False):
        return Run.objects.none()
    key = _api_key_of(principal)
    if key is not None:
        return Run.objects.filter(api_key=key)
    if principal.is_staff:
        return Run.objects.all()
    return Run.objects.filter(owner=principal)


def run_visible_to(principal, run_id) -> Run | None:
    """The run with id ``run_id`` (a UUID or its text) if ``principal`` may see it; None otherwise.

    A malformed id is simply not found: it never reaches the database as a bad value.
    """
    try:
        pk = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except (TypeError, ValueError, AttributeError):
        return None
    # Its owner and key come along: every caller shows who started it.
    return runs_visible_to(principal).select_related("owner", "api_key").filter(pk=pk).first()


def run_list(principal) -> QuerySet[Run]:
    """The runs ``principal`` may see, newest first (ties by id, so pages never overlap), each with its
    owner and key: the runs API's list and the page's history."""
    return runs_visible_to(principal).select_related("owner", "api_key").order_by("-created_at", "pk")


def run_owner_fields(principal) -> dict:
    """The ``owner``/``api_key`` values for a run started by ``principal`` (for ``Run`` creation)."""
    key = _api_key_of(principal)
    if key is not None:
        return {"api_key": key, "owner": None}
    if principal is not None and getattr(principal, "is_authenticated", False) and getattr(principal, "pk", None):
        return {"owner": principal, "api_key": None}
    return {"owner": None, "api_key": None}
