"""DICOMweb QIDO-RS (PS3.18 §10.6 Search Transaction): the study and series searches VERIFY_PACS needs.

``GET {base}/studies?StudyInstanceUID=...&includefield=...`` and ``GET {base}/studies/{uid}/series``
with ``Accept: application/dicom+json``; the answers are DICOM JSON (PS3.18 Annex F) turned into
pydicom datasets, so they compare exactly as C-FIND answers do. Every failure (no answer, an HTTP
error, a body that is not DICOM JSON) is one :class:`SendError` saying what went wrong.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from pydicom import Dataset

from simulations.transport.errors import SendError

_MAX_BODY = 16 * 1024 * 1024


def check_base_url(url: str) -> str | None:
    """A sentence saying what is wrong with a QIDO-RS base URL, or None when it is usable."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"expected an http:// or https:// DICOMweb base URL, got {url!r}"
    if parsed.query or parsed.fragment:
        return f"the DICOMweb base URL {url!r} must not carry a query or fragment"
    return None


def qido_search(base_url: str, path: str, params: dict[str, str], *, timeout: float = 30.0) -> list[Dataset]:
    """``GET {base_url}/{path}?params`` as a QIDO-RS search; the matches as datasets (204: none)."""
    url = f"{base_url.rstrip('/')}/{path.lstrip('/')}?{urllib.parse.urlencode(params, doseq=True)}"
    request = urllib.request.Request(url, headers={"Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's PACS URL
            if response.status == 204:
                return []
            body = response.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise SendError(f"QIDO-RS {url} answered HTTP {exc.code} {exc.reason}", permanent=400 <= exc.code < 500,
                        status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"QIDO-RS {url}: no answer ({reason})") from None
    if len(body) > _MAX_BODY:
        raise SendError(f"QIDO-RS {url} answered more than {_MAX_BODY // 1024 // 1024} MiB", permanent=True)
    if not body.strip():
        return []
    try:
        items = json.loads(body)
        if not isinstance(items, list):
            raise ValueError("not a JSON array")
        return [Dataset.from_json(item) for item in items]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SendError(f"QIDO-RS {url} answered something that is not DICOM JSON: {exc}", permanent=True) from None


__all__ = ["check_base_url", "qido_search"]
