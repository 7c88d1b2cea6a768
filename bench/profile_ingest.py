#!/usr/bin/env python
"""Profile the ingest path with pyinstrument (wall clock, so waits on PostgreSQL show).

    python bench/profile_ingest.py webhook [N]      # N signed single-message deliveries, Django test client
    python bench/profile_ingest.py import [ROWS]    # listening.importing.import_file over a generated CSV
    python bench/profile_ingest.py import 10000 --no-profile   # rows/s and process CPU only
    BENCH_ROOT=/path/to/other/checkout python bench/profile_ingest.py import 10000 --no-profile

A throwaway PostgreSQL database (BENCH_PROFILE_DATABASE_URL, default cxm_bench_profile; the name
must contain "bench") is created, migrated and dropped. Settings are bench.ingest's (DEBUG=0,
eager Celery, no classification on ingest). BENCH_ROOT serves another checkout's code (a git
worktree of an earlier commit) with this script, to compare two commits back to back.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))
# Celery's Django fixup puts the working directory first on sys.path during django.setup(): run
# from another checkout, every module imported after setup (listening.importing among them)
# would come from there, and a BENCH_ROOT comparison would measure this checkout twice.
os.chdir(ROOT)

from bench import ingest as bench  # noqa: E402

DB = os.environ.get("BENCH_PROFILE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cxm_bench_profile")


def webhook(count: int) -> tuple[str, float, float]:
    import json

    from django.test import Client

    from listening.connectors.webhook import sign

    bench.make_webhook_connector("prof")
    messages = bench.make_messages(count + 50, "p", seed=3)
    client = Client()

    def deliver(items: list[dict]) -> None:
        for item in items:
            body = json.dumps(item).encode()
            response = client.post("/hooks/prof/", body, content_type="application/json",
                                   headers=sign(bench.SECRET, int(time.time()), body))
            assert response.status_code == 200, response.content

    deliver(messages[:50])  # warm: imports, caches, the connection pool
    return "deliveries", *_timed(lambda: deliver(messages[50:]))


def file_import(rows: int) -> tuple[str, float, float]:
    from listening.importing import import_file
    from listening.models import Connector

    path = Path(tempfile.mkdtemp(prefix="cxm-profile-")) / "messages.csv"
    bench.write_csv(path, bench.make_messages(rows, "imp", seed=11))
    connector = Connector(kind="import", name="Profile import", slug="profile-import", config={})
    connector.save()
    return "rows", *_timed(lambda: import_file(connector, path, fmt="csv", mapping=bench.CSV_MAPPING,
                                               batch_size=1000))


PROFILER = None


BACKEND_CPU = [0.0]  # seconds of CPU the PostgreSQL backend serving this process spent in the timed work


def _backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend, from /proc: the server
    runs on this machine in the benches. 0 where it cannot be read (a remote server)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(work) -> tuple[float, float]:
    backend = _backend_cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    if PROFILER:
        PROFILER.start()
    work()
    if PROFILER:
        PROFILER.stop()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    BACKEND_CPU[0] = _backend_cpu() - backend
    return wall, cpu


def main() -> int:
    global PROFILER
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args or args[0] not in ("webhook", "import"):
        print(__doc__)
        return 2
    count = int(args[1]) if len(args) > 1 else (300 if args[0] == "webhook" else 10_000)
    env = bench.bench_env(DB, "shipped")
    env["ALLOWED_HOSTS"] = "127.0.0.1,testserver"  # the test client's host
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.server_settings"
    bench.create_database(DB)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if "--no-profile" not in sys.argv:
            from pyinstrument import Profiler

            PROFILER = Profiler(interval=0.001)
        unit, wall, cpu = (webhook if args[0] == "webhook" else file_import)(count)
        import listening.actions

        assert Path(listening.actions.__file__).is_relative_to(ROOT), listening.actions.__file__
        print(f"{ROOT}: {count} {unit} in {wall:.2f} s: {count / wall:,.0f} {unit}/s; process CPU {cpu:.2f} s "
              f"({cpu * 1000 / count:.3f} ms per {unit[:-1]}); PostgreSQL backend CPU {BACKEND_CPU[0]:.2f} s "
              f"({BACKEND_CPU[0] * 1000 / count:.3f} ms per {unit[:-1]}); load average {os.getloadavg()[0]:.1f}")
        if PROFILER:
            print(PROFILER.output_text(unicode=False, color=False))
        return 0
    finally:
        bench.drop_bench_database(DB)


if __name__ == "__main__":
    sys.exit(main())
