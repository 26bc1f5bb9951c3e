"""Benchmark scale-out: the same patient day in-process, on 1 and on 2 Celery worker processes.

Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379). In a fresh PostgreSQL
database and data directory, ``runsim`` runs the scenario (default "Hospital day mix", 50 patients, its
Poisson arrivals sped up by ``--speed`` so that the figure is throughput) three times with the same seed:
``--in-process``, then with a broker and 1 worker, then 2 workers (``celery -A yeeter worker --pool=solo``,
one patient at a time each). It prints one JSON object: patients/minute of each, and
``distributed_ratio`` = 2 workers ÷ in-process. On a 2-core machine this measures what distribution
costs (the in-process run already uses both cores for pixels), not how far it scales.

    .venv/bin/python bench/scale.py [--patients 50] [--seed 1] [--speed 10000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.celery_workers import Workers, redis_url  # noqa: E402  (the tests' worker processes, reused)


def _runsim(env: dict[str, str], args, *extra: str) -> dict:
    result = subprocess.run([sys.executable, "manage.py", "runsim", "--scenario", args.scenario, "--patients",
                             str(args.patients), "--seed", str(args.seed), "--speed", str(args.speed),
                             "--concurrency", str(args.concurrency), "--json", *extra],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if not result.stdout.strip().startswith("{"):
        raise SystemExit(f"runsim failed ({result.returncode}): {result.stderr[-3000:]}")
    return json.loads(result.stdout)


def _figures(summary: dict) -> dict:
    return {key: summary[key] for key in ("passed", "failed", "duration_s", "patients_per_minute",
                                          "instances_per_second", "megabytes_per_second")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=10000.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--scenario", default="Hospital day mix")
    args = parser.parse_args()

    import psycopg

    name = f"yeeter_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    data_dir = Path(tempfile.mkdtemp(prefix="yeeter-scale-"))
    broker, queue = redis_url(12), f"yeeter-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "yeeter.settings", "SECRET_KEY": "bench-only-" + "x" * 40,
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}", "YEETER_DATA_DIR": str(data_dir),
           "YEETER_CELERY_QUEUE": queue, "TCP_NODELAY": "1"}
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    workers = None
    try:
        for command in (["migrate"], ["load_catalog"], ["load_scenarios"]):
            subprocess.run([sys.executable, "manage.py", *command, "-v", "0"], cwd=ROOT, env=env, check=True,
                           capture_output=True)
        in_process = _runsim(env, args, "--in-process")
        celery_env = {**env, "CELERY_BROKER_URL": broker, "YEETER_PIXEL_WORKERS": "1"}
        workers = Workers(broker=broker, queue=queue, log_dir=data_dir, env=celery_env).start(1)
        one = _runsim(celery_env, args)
        workers.add()
        two = _runsim(celery_env, args)
    finally:
        if workers is not None:
            workers.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
    result = {
        "scenario": args.scenario, "patients": args.patients, "concurrency": args.concurrency,
        "in_process": _figures(in_process), "workers_1": _figures(one), "workers_2": _figures(two),
        "distributed_ratio": round(two["patients_per_minute"] / in_process["patients_per_minute"], 3)
        if in_process["patients_per_minute"] else None,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
