"""Logging filters of the settings' LOGGING: nothing secret reaches a log line.

Daphne's server (``manage.py runserver``) writes an access line per request with the whole URL; a
client that puts its API key in the query string (``?api_key=``, refused with a 401 by
:mod:`apikeys.authentication`) would leave the key there for anyone who reads the log.
"""

from __future__ import annotations

import logging
import re

# Query parameters clients try for API keys (refused by apikeys.authentication, scrubbed here). This
# module is imported while logging is configured, before the apps load: it imports nothing of Django's.
QUERY_KEY_PARAMS = ("api_key", "apikey", "key", "x-api-key")
_KEY_IN_QUERY = re.compile(r"([?&](?:%s)=)[^&\s\"']*" % "|".join(re.escape(p) for p in QUERY_KEY_PARAMS),
                           re.IGNORECASE)
REDACTED = "[redacted]"


def scrub_query_keys(text: str) -> str:
    """``text`` with the value of every key-like query parameter replaced by ``[redacted]``."""
    return _KEY_IN_QUERY.sub(lambda m: m.group(1) + REDACTED, text)


class ScrubQueryKeys(logging.Filter):
    """Rewrites a record whose message carries ``?api_key=...`` (or another key parameter) before any
    handler formats it; other records pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub_query_keys(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
