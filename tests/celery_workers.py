"""Real Celery workers for the scale-out tests: ``celery -A yeeter worker`` subprocesses on Redis, on the
test database, each on this test's own queue (so no other test's, or xdist worker's, tasks reach them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import missing_peer

ROOT = Path(__file__).resolve().parents[1]
REDIS = ("127.0.0.1", 6379)


def redis_url(db: int = 13) -> str:
    try:
        socket.create_connection(REDIS, timeout=0.5).close()
    except OSError:
        missing_peer("Redis is not listening on 127.0.0.1:6379 (the Celery broker of the scale-out tests)")
    return f"redis://{REDIS[0]}:{REDIS[1]}/{db}"


def database_url() -> str:
    """The test database as a URL the worker processes' settings read (``DATABASE_URL``)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Workers:
    """N worker processes (``--pool=solo``: the worker process is the one executing its patient)."""

    broker: str
    queue: str
    log_dir: Path
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    def start(self, count: int) -> Workers:
        for _ in range(count):
            self.add()
        return self

    def add(self) -> Worker:
        name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}"
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "yeeter", "worker", "--pool=solo", "-n", f"{name}@%h",
                 "-Q", self.queue, "--without-gossip", "--without-mingle", "-l", "INFO"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, process, log)
        deadline = time.monotonic() + 60
        while " ready." not in worker.text():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"celery worker {name} did not start:\n{worker.text()[-4000:]}")
            time.sleep(0.1)
        self.workers.append(worker)
        return worker

    def pids(self) -> set[int]:
        return {w.pid for w in self.workers}

    def by_pid(self, pid: int) -> Worker:
        return next(w for w in self.workers if w.pid == pid)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.text()[-3000:]}" for w in self.workers)


def worker_env(*, broker: str, queue: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
           "CELERY_BROKER_URL": broker, "YEETER_CELERY_QUEUE": queue, "YEETER_DATA_DIR": str(settings.DATA_DIR),
           "TCP_NODELAY": "1", **(extra or {})}
    if "REDIS_URL" not in (extra or {}):
        env.pop("REDIS_URL", None)  # the in-memory layer unless the test asks for Redis
    return env
