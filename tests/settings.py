"""Settings for the test suite: the production module with a throwaway data dir and key."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("YEETER_DATA_DIR", tempfile.mkdtemp(prefix="yeeter-test-"))

from yeeter.settings import *  # noqa: E402,F403

# A file, not the in-memory shared cache: runs and receivers use the database from several threads,
# and only a file database gives them SQLite's busy waiting instead of "table is locked" errors.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["YEETER_DATA_DIR"], "test.sqlite3")}  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
