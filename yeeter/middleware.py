"""Request limits every URL shares, applied before any view runs (settings.MIDDLEWARE).

* a body announced larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is a 413 saying the limit, before a byte
  of it is read (Django checks only when a view reads ``request.body``/``POST``; DRF reads the stream);
* a NUL character in the path or the query string is a 400: no id, name or value of Yeeter has one,
  and PostgreSQL refuses it in a query (a 500 there before this).

Under ``/api/`` both answer in the API's one error shape (:func:`yeeter.api.error_body`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from yeeter.api import API_PREFIX, error_body
from yeeter.parsers import body_too_large_message


def _refuse(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse(error_body(code, message), status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # Django and DRF read a malformed length as no body


class RequestLimitsMiddleware:
    """413 for bodies over the limit, 400 for NUL characters in the URL (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _content_length(request) > limit:
            return _refuse(request, 413, "request_too_large", body_too_large_message(limit))
        if "\x00" in request.path_info or b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            return _refuse(request, 400, "bad_request", "The URL contains a NUL character (%00): no id, name or "
                                                         "value here has one.")
        return self.get_response(request)
