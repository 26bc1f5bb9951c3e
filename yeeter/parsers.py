"""The API's JSON parser: DRF's, with the limits every JSON endpoint needs (settings.REST_FRAMEWORK).

Kept apart from :mod:`yeeter.api` because DRF imports its parser classes while ``rest_framework.views``
is still loading, before drf-spectacular (imported by ``yeeter.api``) can be.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings as django_settings
from rest_framework import exceptions, parsers, status


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


def body_too_large_message(limit: int) -> str:
    return (f"The request body is larger than this server takes: at most {limit} bytes "
            "(YEETER_MAX_BODY_BYTES, Django's DATA_UPLOAD_MAX_MEMORY_SIZE).")


def _json_problem(data: Any, max_depth: int) -> str | None:
    """Where a parsed JSON document nests deeper than ``max_depth`` or holds a NUL character, else None.

    Iterative, so it cannot itself run out of stack; NUL is refused because no id, name or text of
    this API has one and PostgreSQL cannot store it (``text`` values never hold U+0000).
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return f"{where or 'the body'}: a string contains a NUL character (\\u0000)."
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                return f"{where or 'the body'}: nested deeper than {max_depth} levels."
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    return f"{where or 'the body'}: a key contains a NUL character (\\u0000)."
                child = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)
                stack.append((item, child, depth + 1))
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the limits every JSON endpoint needs: a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413 (DRF reads the stream itself, so Django's own check never
    runs), nesting deeper than ``LIMITS["JSON_DEPTH"]`` or so deep Python's parser gives up is a 400
    ``parse_error`` (not a RecursionError and a 500), and so is a NUL character in any string."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise BodyTooLarge(body_too_large_message(limit))
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                f"JSON parse error - nested deeper than {django_settings.LIMITS['JSON_DEPTH']} levels.") from None
        problem = _json_problem(data, django_settings.LIMITS["JSON_DEPTH"])
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}")
        return data
